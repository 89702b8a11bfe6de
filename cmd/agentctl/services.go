package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

func newServicesCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "services",
		Aliases: []string{"svc"},
		Short:   "List the Service ports the proxy knows: VIPs, protocol, balancing policy, endpoints, routes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ss []admin.Service
			if err := o.get(cmd.Context(), admin.APIVersion+"/services", &ss); err != nil {
				return err
			}
			return o.print(ss, func(w io.Writer) error { return renderServices(w, ss) })
		},
	}
}

func renderServices(w io.Writer, ss []admin.Service) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVIP\tPROTOCOL\tPOLICY\tENDPOINTS\tROUTES")
	for _, s := range ss {
		vips := strings.Join(s.VIPs, ",")
		if vips == "" {
			vips = "None"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.Service, vips, s.Protocol, s.Policy, s.Endpoints, yesNo(s.Routes))
	}
	return tw.Flush()
}

func newEndpointsCmd(o *options) *cobra.Command {
	var service string
	cmd := &cobra.Command{
		Use:     "endpoints",
		Aliases: []string{"ep"},
		Short:   "Show each endpoint's health as the balancer sees it: ejection, failures, EWMA latency, in-flight",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var es []admin.ServiceEndpoints
			if err := o.get(cmd.Context(), admin.APIVersion+"/endpoints", &es); err != nil {
				return err
			}
			if service != "" {
				var kept []admin.ServiceEndpoints
				for _, e := range es {
					if matchService(e.Service, service) {
						kept = append(kept, e)
					}
				}
				es = kept
			}
			return o.print(es, func(w io.Writer) error { return renderEndpoints(w, es) })
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "only this Service: name, namespace/name or namespace/name:port")
	return cmd
}

func renderEndpoints(w io.Writer, es []admin.ServiceEndpoints) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tENDPOINT\tPOD\tNODE\tHEALTH\tEWMA\tIN-FLIGHT\tREQUESTS\tFAILURES\tCONSEC 5XX/CONNECT")
	for _, s := range es {
		for _, e := range s.Endpoints {
			health := "healthy"
			switch {
			case e.Ejected:
				health = "EJECTED until " + e.EjectedUntil.Format("15:04:05")
			case !e.UnreachableUntil.IsZero():
				health = "UNREACHABLE, probe at " + e.UnreachableUntil.Format("15:04:05.000")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d/%d\n", s.Service, e.Address, e.Pod, e.Node, health,
				e.EWMA, e.InFlight, e.Requests, e.Failures, e.Consecutive5xx, e.ConnectFails)
		}
	}
	return tw.Flush()
}
