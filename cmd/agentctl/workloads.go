package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

func newWorkloadsCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "workloads",
		Aliases: []string{"pods"},
		Short:   "List the pods on this node: identity, and whether they are captured and why",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ws []admin.Workload
			if err := o.get(cmd.Context(), admin.APIVersion+"/workloads", &ws); err != nil {
				return err
			}
			return o.print(ws, func(w io.Writer) error { return renderWorkloads(w, ws) })
		},
	}
}

func renderWorkloads(w io.Writer, ws []admin.Workload) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tWORKLOAD\tIP\tIDENTITY\tCAPTURED\tMTLS\tREASON")
	for _, x := range ws {
		reason := x.Reason
		if len(x.ExcludedPorts) > 0 {
			ports := make([]string, len(x.ExcludedPorts))
			for i, p := range x.ExcludedPorts {
				ports[i] = fmt.Sprint(p)
			}
			reason += ", excluded ports " + strings.Join(ports, ",")
		}
		mode := x.Mode
		if mode == "" {
			mode = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Namespace, x.Pod, x.Workload,
			strings.Join(x.IPs, ","), x.Identity, yesNo(x.Captured), mode, reason)
	}
	return tw.Flush()
}
