package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

func newStatusCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the agent's health: kernel features, programs, maps, mode, config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st admin.Status
			if err := o.get(cmd.Context(), admin.APIVersion+"/status", &st); err != nil {
				return err
			}
			return o.print(st, func(w io.Writer) error { return renderStatus(w, st, time.Now()) })
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func renderStatus(w io.Writer, st admin.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(tw, "Node:\t%s (%s)\n", st.Node, ready)
	fmt.Fprintf(tw, "Version:\t%s (%s), kernel %s\n", st.Version, st.Commit, st.Kernel)
	fmt.Fprintf(tw, "Uptime:\t%s\n", now.Sub(st.StartTime).Round(time.Second))
	fmt.Fprintf(tw, "Mode:\t%s, fail-%s; %d inbound plaintext connections dropped by STRICT\n", st.Mode, st.FailMode, st.StrictDrops)
	fmt.Fprintf(tw, "Proxy:\tlistening=%s at %s; %d connections accepted (%d refused: not captured)\n",
		yesNo(st.ProxyListening), strings.Join(st.ProxyAddress, ","), st.Proxy.Accepted, st.Proxy.NotCaptured)
	fmt.Fprintf(tw, "\tTCP: %d forwarded, %d failed; HTTP: %d connections, %d requests, %d errors\n",
		st.Proxy.Forwarded, st.Proxy.Failed, st.Proxy.HTTPConns, st.Proxy.Requests, st.Proxy.RequestErrors)
	fmt.Fprintf(tw, "Cgroup root:\t%s\n", st.CgroupRoot)
	fmt.Fprintf(tw, "Pins:\t%s\n", st.PinPath)
	cfg := st.Config
	applied := cfg.GenerationApplied
	if applied.IsZero() {
		applied = cfg.LastApplied // an agent from before GenerationApplied
	}
	// The time to the millisecond, so that a change's apply time can be
	// read off against the time it was written.
	fmt.Fprintf(tw, "Config:\tgeneration %d from %s, applied at %s (%s ago)\n", cfg.Generation, cfg.Source,
		applied.UTC().Format("2006-01-02T15:04:05.000Z07:00"), now.Sub(applied).Round(time.Second))
	kinds := make([]string, 0, len(cfg.Objects))
	for k, n := range cfg.Objects {
		if n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		}
	}
	sort.Strings(kinds)
	fmt.Fprintf(tw, "Objects:\t%s\n", strings.Join(kinds, " "))
	if len(cfg.Errors) == 0 {
		fmt.Fprintf(tw, "Config errors:\tnone\n")
	} else {
		fmt.Fprintf(tw, "Config errors:\t%d (last good versions keep serving)\n", len(cfg.Errors))
		for _, e := range cfg.Errors {
			fmt.Fprintf(tw, "\t- %s\n", e)
		}
	}
	if st.Certs != nil {
		fmt.Fprintf(tw, "Certificates:\t%d held, %d pending; next expiry %s; %d issued, %d failed requests; %d trusted roots\n",
			st.Certs.Count, st.Certs.Missing, st.Certs.NextExpiry.Format(time.RFC3339), st.Certs.Issued, st.Certs.Failed, st.Certs.Roots)
		fmt.Fprintf(tw, "Tunnel:\t%d connections in, %d streams refused; authorization %d allowed, %d denied\n",
			st.Proxy.TunnelConns, st.Proxy.TunnelRefused, st.Proxy.AuthzAllowed, st.Proxy.AuthzDenied)
	} else {
		fmt.Fprintf(tw, "Certificates:\tnone (no CA configured: traffic between nodes is plaintext)\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nCAPTURE VERDICTS")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	verdicts := make([]string, 0, len(st.Capture))
	for v := range st.Capture {
		verdicts = append(verdicts, v)
	}
	sort.Strings(verdicts)
	for _, v := range verdicts {
		fmt.Fprintf(tw, "  %s\t%d\n", v, st.Capture[v])
	}
	tw.Flush()

	fmt.Fprintln(w, "\nPROGRAMS")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tPROG ID\tLINK ID\tPINNED")
	for _, p := range st.Programs {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", p.Name, p.ID, p.LinkID, yesNo(p.Pinned))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nMAPS")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tTYPE\tENTRIES\tMAX\tFILL")
	for _, m := range st.Maps {
		entries, fill := fmt.Sprint(m.Entries), fmt.Sprintf("%.1f%%", 100*m.Fill)
		if m.Entries < 0 {
			entries, fill = "-", "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", m.Name, m.Type, entries, m.MaxEntries, fill)
	}
	tw.Flush()

	if st.Flows != nil {
		renderFlowStatus(w, st.Flows)
	}

	fmt.Fprintln(w, "\nKERNEL FEATURES")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range st.Features {
		state := "available"
		if !f.Available {
			state = "missing"
			if f.Required {
				state = "MISSING (required)"
			}
		}
		detail := ""
		if !f.Available && f.Detail != "" {
			detail = " (" + f.Detail + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", f.Name, state, detail)
	}
	return tw.Flush()
}

// renderFlowStatus is the FLOWS section of status: the kernel flow
// telemetry's hooks with their cost per run, and its maps' health.
func renderFlowStatus(w io.Writer, f *admin.FlowStatus) {
	fmt.Fprintln(w, "\nFLOWS (kernel TCP figures)")
	if !f.Enabled {
		fmt.Fprintf(w, "  not collected: %s\n", orDash(f.Error, ""))
		return
	}
	if f.Error != "" {
		fmt.Fprintf(w, "  warning: %s\n", f.Error)
	}
	fmt.Fprintf(w, "  %d aggregates in the kernel, %d label sets carrying pruned keys or proxy connect failures, %d keys pruned; %d trace events lost\n",
		f.Keys, f.Carried, f.Pruned, f.LostEvents)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PROGRAM\tHOOK\tPROG ID\tLINK ID\tPINNED\tRUNS\tNS/RUN")
	for _, p := range f.Programs {
		if p.Missing != "" {
			fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\tmissing: %s\n", p.Name, p.Hook, p.Missing)
			continue
		}
		nsPerRun := "-"
		if p.RunCount > 0 && p.RunTimeNs > 0 {
			nsPerRun = fmt.Sprintf("%.0f", p.NsPerRun)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%d\t%s\n", p.Name, p.Hook, p.ID, p.LinkID, yesNo(p.Pinned), p.RunCount, nsPerRun)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  MAP\tENTRIES\tMAX\tFILL\tINSERT FAILURES\tEVICTED")
	for _, m := range f.Maps {
		entries, max, fill := fmt.Sprint(m.Entries), fmt.Sprint(m.MaxEntries), fmt.Sprintf("%.1f%%", 100*m.Fill)
		if m.Entries < 0 {
			entries = "-"
		}
		if m.MaxEntries == 0 {
			max, fill = "-", "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\n", m.Name, entries, max, fill, m.InsertFailures, m.Evicted)
	}
	tw.Flush()
	if len(f.Programs) > 0 {
		fmt.Fprintln(w, "  (RUNS and NS/RUN count while kernel.bpf_stats_enabled=1: agentctl bpf progs --sample 5s)")
	}
}
