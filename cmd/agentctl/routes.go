package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

func newRoutesCmd(o *options) *cobra.Command {
	var service string
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Show the effective route table of each Service, in precedence order, and the routes' status",
		Long: `Show, for every Service port with routes attached, the matches in the order the proxy
tries them, the HTTPRoute or GRPCRoute rule each one comes from, its backends and filters;
then each route's status per parent (Accepted, ResolvedRefs, with reasons).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r admin.Routes
			if err := o.get(cmd.Context(), admin.APIVersion+"/routes", &r); err != nil {
				return err
			}
			if service != "" {
				var kept []admin.ServiceRoutes
				for _, t := range r.Tables {
					if matchService(t.Service, service) {
						kept = append(kept, t)
					}
				}
				r.Tables = kept
			}
			return o.print(r, func(w io.Writer) error { return renderRoutes(w, r) })
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "only this Service: name, namespace/name or namespace/name:port")
	return cmd
}

// matchService matches "ns/name:port" against name, ns/name or ns/name:port.
func matchService(full, want string) bool {
	if full == want {
		return true
	}
	ns, rest, _ := cutLast(full, "/")
	name, _, _ := cutLast(rest, ":")
	return want == name || want == ns+"/"+name
}

func cutLast(s, sep string) (before, after string, found bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func renderRoutes(w io.Writer, r admin.Routes) error {
	if len(r.Tables) == 0 {
		fmt.Fprintln(w, "No Service has routes attached: each Service's traffic is balanced across its endpoints.")
	}
	for i, t := range r.Tables {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "SERVICE %s\n", t.Service)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tCLIENTS\tMATCH\tROUTE\tBACKENDS\tFILTERS")
		for j, e := range t.Entries {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", j+1, e.Clients, e.Match, e.Route, e.Backends, e.Filters)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Statuses) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nROUTE STATUS")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ROUTE\tPARENT\tCONDITION\tSTATUS\tREASON\tMESSAGE")
	for _, s := range r.Statuses {
		for _, p := range s.Parents {
			for _, c := range p.Conditions {
				fmt.Fprintf(tw, "  %s %s/%s\t%s\t%s\t%s\t%s\t%s\n", s.Kind, s.Namespace, s.Name, p.Parent, c.Type, c.Status, c.Reason, c.Message)
			}
		}
	}
	return tw.Flush()
}
