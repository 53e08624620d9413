package healthreport

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// DefaultPeriod is how often a proxy-server rewrites its report by default;
// readers give up on a report not rewritten for a few periods.
const DefaultPeriod = 30 * time.Second

// FieldManager is the server-side apply field manager of report writes.
const FieldManager = "cluster-proxy-proxy-server"

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Client writes the ConfigMap (a kubernetes.Interface's CoreV1()).
	Client corev1client.ConfigMapsGetter
	// Namespace is where the ConfigMap lives: the proxy-server's own.
	Namespace string
	// Owner is the proxy-server pod: it names and owns the ConfigMap.
	Owner Owner
	// Period is how often the report is rewritten; 0 means DefaultPeriod.
	Period time.Duration
	// MinInterval spaces writes: a trigger that comes sooner after the
	// last write waits for the rest of it, so agents connecting by the
	// thousand (a proxy-server restart) cost a write per MinInterval, not
	// one per agent. 0 writes at once.
	MinInterval time.Duration
	// Snapshot returns the report to write. The Writer sets its Version
	// and UpdateTime. It is called from the Writer's goroutine.
	Snapshot func() Report
	// Clock dates the reports and paces the rewrites; nil means the real
	// clock.
	Clock clock.WithTicker
}

// Validate checks the options.
func (o *WriterOptions) Validate() error {
	var errs []error
	if o.Client == nil {
		errs = append(errs, errors.New("a Client is required"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("a Namespace is required"))
	}
	if o.Owner.PodName == "" {
		errs = append(errs, errors.New("an Owner.PodName is required: it names the ConfigMap"))
	}
	if o.Period < 0 {
		errs = append(errs, fmt.Errorf("the Period must not be negative, got %s", o.Period))
	}
	if o.MinInterval < 0 {
		errs = append(errs, fmt.Errorf("the MinInterval must not be negative, got %s", o.MinInterval))
	}
	if o.Snapshot == nil {
		errs = append(errs, errors.New("a Snapshot function is required"))
	}
	return errors.Join(errs...)
}

// Writer keeps a proxy-server's report ConfigMap current: it writes it when
// it starts, every Period and when triggered.
type Writer struct {
	o       WriterOptions
	trigger chan struct{}
}

// NewWriter returns a Writer with validated options.
func NewWriter(o WriterOptions) (*Writer, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("invalid health report writer options: %w", err)
	}
	if o.Period == 0 {
		o.Period = DefaultPeriod
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Writer{o: o, trigger: make(chan struct{}, 1)}, nil
}

// Trigger asks for a write as soon as the running Writer can; triggers
// that arrive while one is pending are merged. It never blocks.
func (w *Writer) Trigger() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run writes the report until ctx is done. A failed write is logged and
// retried at the next period or trigger; the report is left in place when
// Run returns (the pod's garbage collection removes it).
func (w *Writer) Run(ctx context.Context) error {
	log := klog.FromContext(ctx).WithValues("configMap", klog.KRef(w.o.Namespace, ConfigMapName(w.o.Owner.PodName)))
	ctx = klog.NewContext(ctx, log)
	ticker := w.o.Clock.NewTicker(w.o.Period)
	defer ticker.Stop()
	for {
		written := w.o.Clock.Now()
		if err := w.Write(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "failed to write the health report; retrying", "after", w.o.Period)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		case <-w.trigger:
		}
		if wait := w.o.MinInterval - w.o.Clock.Since(written); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-w.o.Clock.After(wait):
			}
		}
	}
}

// Write writes the current report once.
func (w *Writer) Write(ctx context.Context) error {
	r := w.o.Snapshot()
	r.Version = Version
	r.UpdateTime = w.o.Clock.Now().UTC()
	data, err := Encode(r)
	if err != nil {
		return err
	}
	cm, err := configMap(w.o.Namespace, w.o.Owner, data)
	if err != nil {
		return err
	}
	if _, err := w.o.Client.ConfigMaps(w.o.Namespace).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("failed to write ConfigMap %s/%s: %w", w.o.Namespace, *cm.Name, err)
	}
	klog.FromContext(ctx).V(4).Info("wrote the health report")
	return nil
}
