package command

import (
	"context"
	"errors"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// fakeOptions records what New did with it.
type fakeOptions struct {
	name        string
	validateErr error
	calls       []string
}

func (o *fakeOptions) AddFlags(fs *pflag.FlagSet) { fs.StringVar(&o.name, "name", "", "a name") }
func (o *fakeOptions) Complete() error            { o.calls = append(o.calls, "complete"); return nil }
func (o *fakeOptions) Validate() error            { o.calls = append(o.calls, "validate"); return o.validateErr }
func (o *fakeOptions) Log(logr.Logger)            { o.calls = append(o.calls, "log") }

func TestNewRunsCompleteValidateLogThenRun(t *testing.T) {
	g := NewWithT(t)
	opts := &fakeOptions{}
	var gotLogger bool
	cmd := New("thing", "a thing", opts, func(ctx context.Context) error {
		opts.calls = append(opts.calls, "run")
		_, err := logr.FromContext(ctx)
		gotLogger = err == nil
		return nil
	})
	cmd.SetArgs([]string{"--name=x", "--log_file_max_size=5"})
	g.Expect(cmd.Execute()).To(Succeed())
	g.Expect(opts.calls).To(Equal([]string{"complete", "validate", "log", "run"}))
	g.Expect(opts.name).To(Equal("x"))
	g.Expect(gotLogger).To(BeTrue(), "the context carries the logger")

	// One spelling in help and lookups: dashes; underscores are accepted.
	g.Expect(cmd.Flags().Lookup("log-file-max-size")).NotTo(BeNil())
	g.Expect(cmd.Flags().Lookup("log_file_max_size")).NotTo(BeNil(), "normalised to the dashed flag")
	g.Expect(cmd.Flags().Lookup("log-file-max-size").Value.String()).To(Equal("5"))
	g.Expect(cmd.Flags().Lookup("v").DefValue).To(Equal("2"))
}

func TestNewStopsOnInvalidOptions(t *testing.T) {
	g := NewWithT(t)
	opts := &fakeOptions{validateErr: errors.New("invalid --name")}
	cmd := New("thing", "a thing", opts, func(context.Context) error {
		opts.calls = append(opts.calls, "run")
		return nil
	})
	cmd.SetArgs(nil)
	g.Expect(cmd.Execute()).To(MatchError("invalid --name"))
	g.Expect(opts.calls).To(Equal([]string{"complete", "validate"}), "nothing runs or logs after a validation error")
	cmd.SetArgs([]string{"extra"})
	g.Expect(cmd.Execute()).To(MatchError(ContainSubstring(`unknown command "extra"`)))
	klog.Flush()
}
