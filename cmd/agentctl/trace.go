package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

type traceOpts struct {
	pod, namespace, service, types string
	duration                       time.Duration
	count                          int
}

func newTraceCmd(o *options) *cobra.Command {
	var t traceOpts
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Stream kernel and proxy events live: capture decisions, connect failures, resets, retransmits, STRICT drops, policy denials",
		Long: `trace streams events from the agent's BPF ring buffer (and the proxy's authorization
denials) with pods, workloads and services named. Filters by type and pod are applied in the
kernel, so an idle filter costs almost nothing. Lost events are never silent: a LOST line
says how many the kernel (ring buffer full) or the agent (this client too slow) dropped.`,
		Example: `  agentctl trace --pod shop/client --type capture
  agentctl trace --type strict_drop,policy_deny --namespace shop
  agentctl trace --type reset,retransmit,connect_fail,state --pod shop/client
  agentctl trace --type reset,retransmit,connect_fail -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTrace(cmd.Context(), o, t)
		},
	}
	f := cmd.Flags()
	f.StringVar(&t.pod, "pod", "", "only events of this pod (namespace/name)")
	f.StringVar(&t.namespace, "namespace", "", "only events of pods in this namespace")
	f.StringVar(&t.service, "service", "", "only events for this Service (namespace/name)")
	f.StringVar(&t.types, "type", "", "comma-separated types: capture, connect_fail, reset, retransmit, strict_drop, policy_deny, state (default all)")
	f.DurationVar(&t.duration, "duration", 0, "stop after this long (default: until interrupted)")
	f.IntVar(&t.count, "count", 0, "stop after this many events")
	return cmd
}

func runTrace(ctx context.Context, o *options, t traceOpts) error {
	if t.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.duration)
		defer cancel()
	}
	q := url.Values{}
	for k, v := range map[string]string{"pod": t.pod, "namespace": t.namespace, "service": t.service, "type": t.types} {
		if v != "" {
			q.Set(k, v)
		}
	}
	resp, err := o.client().Do(ctx, "GET", admin.APIVersion+"/trace?"+q.Encode(), nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if o.output == "table" || o.output == "" {
		fmt.Fprintf(o.out, "%-12s %-12s %-24s %-22s %-22s %s\n", "TIME", "TYPE", "POD", "SOURCE", "DESTINATION", "DETAIL")
	}
	return streamTrace(resp.Body, o.out, o.output, t.count)
}

// streamTrace prints events as they come; a "lost" summary line prints
// only when the count grows, and once at the end.
func streamTrace(r io.Reader, w io.Writer, format string, count int) error {
	sc := bufio.NewScanner(r)
	var last admin.TraceEvent
	n := 0
	defer func() {
		if format != "json" {
			fmt.Fprintf(w, "-- %d events shown; lost: %d in the kernel (ring buffer full), %d in the agent (client too slow)\n",
				n, last.LostKernel, last.LostAgent)
		}
	}()
	for sc.Scan() {
		var ev admin.TraceEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		if ev.Type == "lost" {
			if ev.LostKernel != last.LostKernel || ev.LostAgent != last.LostAgent {
				if format == "json" {
					fmt.Fprintln(w, sc.Text())
				} else {
					fmt.Fprintf(w, "LOST %d events in the kernel and %d in the agent so far\n", ev.LostKernel, ev.LostAgent)
				}
			}
			last = ev
			continue
		}
		if format == "json" {
			fmt.Fprintln(w, sc.Text())
		} else {
			fmt.Fprintln(w, formatTraceEvent(ev))
		}
		n++
		if count > 0 && n >= count {
			return nil
		}
	}
	return nil
}

func formatTraceEvent(ev admin.TraceEvent) string {
	src := orDash(ev.SrcPod, ev.Src)
	dst := orDash(ev.DstPod, ev.Dst)
	if ev.Orig != "" {
		dst = ev.Orig
		if ev.Service != "" {
			dst = ev.Service + " (" + ev.Orig + ")"
		}
	}
	detail := ev.Reason
	if ev.Principal != "" {
		detail += " from " + ev.Principal
	}
	return fmt.Sprintf("%-12s %-12s %-24s %-22s %-22s %s", ev.Time.Format("15:04:05.000"), ev.Type, orDash(ev.Pod, ""),
		src, dst, strings.TrimSpace(detail))
}

func orDash(a, b string) string {
	switch {
	case a != "":
		return a
	case b != "":
		return b
	}
	return "-"
}
