package framework

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scrapeTimeout bounds one scrape.
const scrapeTimeout = 5 * time.Second

// scrapeClient makes one connection per scrape, so no idle connection
// (and no goroutine reading it) outlives a scrape.
var scrapeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// ScrapeMetric returns the sum of the samples of the Prometheus metric
// name (every label set) that url serves in the text format, and 0 when
// there is none.
func ScrapeMetric(ctx context.Context, url, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("failed to scrape %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("failed to scrape %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("failed to scrape %s: %s", url, resp.Status)
	}
	var sum float64
	scanner := bufio.NewScanner(bytes.NewReader(body))
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (!strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{")) {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			return 0, fmt.Errorf("failed to parse %q from %s", line, url)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse %q from %s: %w", line, url, err)
		}
		sum += v
	}
	if err := scanner.Err(); err != nil {
		return 0, fmt.Errorf("failed to read %s: %w", url, err)
	}
	return sum, nil
}
