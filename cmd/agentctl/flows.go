package main

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

type flowsOpts struct {
	pod, direction, sort string
	summary              bool
}

func newFlowsCmd(o *options) *cobra.Command {
	var f flowsOpts
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "List the open TCP flows of this node's meshed pods, as the kernel sees them, or the per-workload totals",
		Long: `flows lists the TCP connections of the node's meshed pods that are open now, from the
kernel's flow programs: the pod's own socket addresses, the address the app dialed when capture
redirected the connect to the node proxy, the TCP state, the smoothed RTT, retransmitted
segments and payload bytes. -o wide adds the pod's workload, what the peer is and the socket
cookie.

--summary shows instead what the skein_tcp_* metrics export: one line per label set (reporter,
source and destination workload, destination service, mTLS), with connections opened, closed
and failed (including the node proxy's failed connects for captured ones), resets, retransmits,
bytes (SENT: destination to source, RECV: source to destination) and the mean RTT.`,
		Example: `  agentctl flows --pod shop/client
  agentctl flows --direction outbound --sort srtt
  agentctl flows --summary`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch f.sort {
			case "", "srtt", "retransmits", "bytes", "age":
			default:
				return fmt.Errorf("--sort %q: want srtt, retransmits, bytes or age", f.sort)
			}
			dir, err := parseDirection(f.direction)
			if err != nil {
				return err
			}
			if f.summary {
				if f.pod != "" || f.sort != "" {
					return fmt.Errorf("--pod and --sort apply to open flows; --summary is per workload (use --direction to pick a reporter)")
				}
				var s admin.FlowSummary
				if err := o.get(cmd.Context(), admin.APIVersion+"/flows/summary", &s); err != nil {
					return err
				}
				s.Series = filterSeries(s.Series, dir)
				return o.print(s, func(w io.Writer) error { return renderFlowSummary(w, s) })
			}
			q := url.Values{}
			if f.pod != "" {
				q.Set("pod", f.pod)
			}
			if dir != "" {
				q.Set("direction", dir)
			}
			var fl admin.Flows
			if err := o.get(cmd.Context(), admin.APIVersion+"/flows?"+q.Encode(), &fl); err != nil {
				return err
			}
			sortFlows(fl.Flows, f.sort)
			return o.print(fl, func(w io.Writer) error { return renderFlows(w, fl, o.output == "wide", time.Now()) })
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.pod, "pod", "", "only flows of this pod (namespace/name)")
	fs.StringVar(&f.direction, "direction", "", "outbound (the pod connected) or inbound (it accepted); in/out for short")
	fs.StringVar(&f.sort, "sort", "", "sort by srtt, retransmits, bytes (largest first) or age (oldest first); default: by pod, then age")
	fs.BoolVar(&f.summary, "summary", false, "show the totals per label set that skein_tcp_* export instead")
	return cmd
}

func parseDirection(s string) (string, error) {
	switch s {
	case "":
		return "", nil
	case "out", "outbound":
		return "outbound", nil
	case "in", "inbound":
		return "inbound", nil
	}
	return "", fmt.Errorf("--direction %q: want outbound or inbound", s)
}

// filterSeries keeps a reporter: outbound flows are reported by the source.
func filterSeries(series []admin.FlowSeries, dir string) []admin.FlowSeries {
	if dir == "" {
		return series
	}
	want := map[string]string{"outbound": "source", "inbound": "destination"}[dir]
	out := series[:0]
	for _, s := range series {
		if s.Reporter == want {
			out = append(out, s)
		}
	}
	return out
}

func sortFlows(fl []admin.Flow, by string) {
	key := func(f *admin.Flow) float64 {
		switch by {
		case "srtt":
			return float64(f.SRTTUs)
		case "retransmits":
			return float64(f.Retransmits)
		case "bytes":
			return float64(f.BytesSent + f.BytesReceived)
		case "age":
			return -float64(f.Start.UnixNano())
		}
		return 0
	}
	if by == "" {
		return // the agent's order: by pod, then age
	}
	sort.SliceStable(fl, func(i, j int) bool { return key(&fl[i]) > key(&fl[j]) })
}

func renderFlows(w io.Writer, fl admin.Flows, wide bool, now time.Time) error {
	if !fl.Enabled {
		_, err := fmt.Fprintf(w, "kernel flow figures are not collected on this node: %s\n", orDash(fl.Error, ""))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "POD\tDIR\tLOCAL\tPEER\tDIALED\tSTATE\tSRTT\tRETRANS\tSENT\tRECV\tAGE"
	if wide {
		head += "\tWORKLOAD\tPEER IS\tCOOKIE"
	}
	fmt.Fprintln(tw, head)
	for _, f := range fl.Flows {
		srtt := "-"
		if f.SRTTUs > 0 {
			srtt = (time.Duration(f.SRTTUs) * time.Microsecond).String()
		}
		dir := map[string]string{"outbound": "out", "inbound": "in"}[f.Direction]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s", f.Pod, orDash(dir, f.Direction), f.Local, f.Peer,
			orDash(f.Dialed, ""), f.State, srtt, f.Retransmits, humanBytes(f.BytesSent), humanBytes(f.BytesReceived),
			now.Sub(f.Start).Round(time.Second))
		if wide {
			fmt.Fprintf(tw, "\t%s\t%s\t%d", orDash(f.Workload, ""), orDash(f.PeerName, ""), f.Cookie)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d open flows\n", len(fl.Flows))
	return err
}

func renderFlowSummary(w io.Writer, s admin.FlowSummary) error {
	if s.Error != "" {
		fmt.Fprintf(w, "warning: %s\n", s.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPORTER\tSOURCE\tDESTINATION\tSERVICE\tMTLS\tOPENED\tCLOSED\tFAILED\tRESETS SENT/RECV\tRETRANS\tSENT\tRECV\tRTT\tCONNECT")
	for _, x := range s.Series {
		fmt.Fprintf(tw, "%s\t%s/%s\t%s/%s\t%s\t%s\t%d\t%d\t%d\t%d/%d\t%d\t%s\t%s\t%s\t%s\n", x.Reporter,
			x.SourceNamespace, x.SourceWorkload, x.DestinationNamespace, x.DestinationWorkload, x.DestinationService,
			x.SecurityPolicy, x.Opened, x.Closed, x.Failed, x.ResetsSent, x.ResetsReceived, x.Retransmits,
			humanBytes(x.SentBytes), humanBytes(x.ReceivedBytes), meanUs(x.RTTMeanUs), meanUs(x.ConnectMeanUs))
	}
	return tw.Flush()
}

func meanUs(us float64) string {
	if us <= 0 {
		return "-"
	}
	return (time.Duration(us*1000) * time.Nanosecond).Round(time.Microsecond).String()
}

// humanBytes prints a byte count in binary units.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
