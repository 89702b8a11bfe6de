package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

func newBPFCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bpf",
		Short: "Inspect the agent's BPF maps and programs",
	}
	maps := &cobra.Command{
		Use:   "maps [NAME]",
		Short: "List the maps with their fill, or dump one with its keys decoded",
		Args:  cobra.MaximumNArgs(1),
		ValidArgs: []string{"capture_cfg", "members", "excluded_ports", "mesh_dsts", "orig_dst", "verdicts",
			"trusted_srcs", "strict_stats", "proxy_listener"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				var ms []admin.Map
				if err := o.get(cmd.Context(), admin.APIVersion+"/bpf/maps", &ms); err != nil {
					return err
				}
				return o.print(ms, func(w io.Writer) error { return renderMaps(w, ms) })
			}
			var d admin.MapDump
			if err := o.get(cmd.Context(), admin.APIVersion+"/bpf/maps/"+args[0], &d); err != nil {
				return err
			}
			return o.print(d, func(w io.Writer) error { return renderMapDump(w, d) })
		},
	}
	var sample time.Duration
	progs := &cobra.Command{
		Use:   "progs",
		Short: "List the attached programs: ids, links, runs and time per run",
		Long: `progs lists the programs the agent attached. With --sample, the kernel's BPF run-time
statistics are enabled for that long first (they cost a little on every run, so they are off by
default) and the run count and nanoseconds per run are those of the sample window.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var before []admin.ProgramStats
			if sample > 0 {
				if err := o.get(cmd.Context(), admin.APIVersion+"/bpf/progs", &before); err != nil {
					return err
				}
				resp, err := o.client().Do(cmd.Context(), "POST", fmt.Sprintf("%s/bpf/stats?seconds=%d", admin.APIVersion, int(sample.Seconds())+1), nil)
				if err != nil {
					return err
				}
				resp.Body.Close()
				select {
				case <-time.After(sample):
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				}
			}
			var ps []admin.ProgramStats
			if err := o.get(cmd.Context(), admin.APIVersion+"/bpf/progs", &ps); err != nil {
				return err
			}
			if sample > 0 {
				ps = sampleDelta(before, ps)
			}
			return o.print(ps, func(w io.Writer) error { return renderProgs(w, ps) })
		},
	}
	progs.Flags().DurationVar(&sample, "sample", 0, "measure run time for this long (e.g. 5s)")
	cmd.AddCommand(maps, progs)
	return cmd
}

// sampleDelta turns cumulative counters into the sample window's.
func sampleDelta(before, after []admin.ProgramStats) []admin.ProgramStats {
	prev := map[uint32]admin.ProgramStats{}
	for _, p := range before {
		prev[p.ID] = p
	}
	for i := range after {
		if b, ok := prev[after[i].ID]; ok {
			after[i].RunCount -= b.RunCount
			after[i].RunTimeNs -= b.RunTimeNs
		}
		after[i].NsPerRun = 0
		if after[i].RunCount > 0 {
			after[i].NsPerRun = float64(after[i].RunTimeNs) / float64(after[i].RunCount)
		}
	}
	return after
}

func renderMaps(w io.Writer, ms []admin.Map) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tENTRIES\tMAX\tFILL")
	for _, m := range ms {
		entries, fill := fmt.Sprint(m.Entries), fmt.Sprintf("%.1f%%", 100*m.Fill)
		if m.Entries < 0 {
			entries, fill = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", m.Name, m.Type, entries, m.MaxEntries, fill)
	}
	return tw.Flush()
}

func renderMapDump(w io.Writer, d admin.MapDump) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "KEY\tVALUE\tNOTE\n")
	for _, e := range d.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Key, e.Value, e.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d entries in %s\n", len(d.Entries), d.Name)
	return nil
}

func renderProgs(w io.Writer, ps []admin.ProgramStats) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tPROG ID\tLINK ID\tPINNED\tRUNS\tNS/RUN")
	for _, p := range ps {
		nsPerRun := "-"
		if p.RunCount > 0 {
			nsPerRun = fmt.Sprintf("%.0f", p.NsPerRun)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%s\n", p.Name, p.Type, p.ID, p.LinkID, yesNo(p.Pinned), p.RunCount, nsPerRun)
	}
	return tw.Flush()
}
