package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// pollResult says when the wanted pod first answered.
type pollResult struct {
	Found bool `json:"found"`
	// FirstMatchUnixNano is the wall-clock time of the first answer from
	// the wanted pod (the harness compares it with when it wrote the
	// configuration; both run on one machine, with one clock).
	FirstMatchUnixNano int64  `json:"firstMatchUnixNano"`
	Polls              int    `json:"polls"`
	Errors             int    `json:"errors"`
	FirstPod           string `json:"firstPod"`
	LastPod            string `json:"lastPod"`
	FirstError         string `json:"firstError,omitempty"`
}

// newPollCommand asks a URL again and again, each time on a new
// connection, until the pod named in the answer's X-Pod header is the
// wanted one: how long a route change takes to apply.
func newPollCommand() *cobra.Command {
	var target, want string
	var interval, timeout time.Duration
	cmd := &cobra.Command{
		Use:   "poll",
		Short: "Request a URL on new connections until a given pod answers; print when as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if want == "" || interval <= 0 || timeout <= 0 || timeout > 5*time.Minute {
				return errors.New("--want-pod is required; --interval positive; --timeout up to 5m")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return printJSON(cmd.OutOrStdout(), poll(ctx, target, want, interval))
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "URL to ask")
	f.StringVar(&want, "want-pod", "", "pod whose answer ends the polling")
	f.DurationVar(&interval, "interval", 2*time.Millisecond, "pause between requests")
	f.DurationVar(&timeout, "timeout", 60*time.Second, "give up after this long")
	return cmd
}

func poll(ctx context.Context, target, want string, interval time.Duration) pollResult {
	var r pollResult
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	for ctx.Err() == nil {
		r.Polls++
		pod, err := askPod(ctx, client, target)
		if err != nil {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = err.Error()
			}
		} else {
			r.LastPod = pod
			if r.FirstPod == "" {
				r.FirstPod = pod
			}
			if pod == want {
				r.Found = true
				r.FirstMatchUnixNano = time.Now().UnixNano()
				return r
			}
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
		}
	}
	return r
}

func askPod(ctx context.Context, client *http.Client, target string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Header.Get(podHeader), nil
}
