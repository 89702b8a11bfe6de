package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

func newDiagnoseCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "diagnose NAMESPACE/POD",
		Short: "Everything the agent knows about one pod: capture, programs, routes, policies, certificate, recent failures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, pod, ok := strings.Cut(args[0], "/")
			if !ok {
				return fmt.Errorf("%q: name the pod as namespace/name", args[0])
			}
			var d admin.Diagnosis
			if err := o.get(cmd.Context(), admin.APIVersion+"/diagnose/"+ns+"/"+pod, &d); err != nil {
				return err
			}
			return o.print(d, func(w io.Writer) error { return renderDiagnosis(w, d, time.Now()) })
		},
	}
}

func renderDiagnosis(w io.Writer, d admin.Diagnosis, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Pod:\t%s\n", d.Pod)
	if !d.Found {
		fmt.Fprintf(tw, "Found:\tno: %s\n", d.Why)
		return tw.Flush()
	}
	if wl := d.Workload; wl != nil {
		fmt.Fprintf(tw, "Workload:\t%s (%s), identity %s\n", wl.Workload, strings.Join(wl.IPs, ","), wl.Identity)
		if wl.Mode != "" {
			fmt.Fprintf(tw, "mTLS mode:\t%s\n", wl.Mode)
		}
		fmt.Fprintf(tw, "Cgroup:\t%s (id %d)\n", orDash(wl.Cgroup, ""), wl.CgroupID)
	}
	fmt.Fprintf(tw, "Captured:\t%s: %s\n", yesNo(d.Captured), d.Why)
	if d.BPFMember != "" {
		fmt.Fprintf(tw, "In the kernel:\t%s\n", d.BPFMember)
	}
	for i, p := range d.Programs {
		label := ""
		if i == 0 {
			label = "Programs:"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, p)
	}
	list := func(label string, xs []string) {
		if len(xs) == 0 {
			fmt.Fprintf(tw, "%s\tnone\n", label)
			return
		}
		for i, x := range xs {
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(tw, "%s\t%s\n", label, x)
		}
	}
	list("Backs services:", d.Services)
	list("Routes:", d.Routes)
	list("Policies:", d.Policies)
	if c := d.Certificate; c != nil {
		if c.NotAfter.IsZero() {
			fmt.Fprintf(tw, "Certificate:\tNOT ISSUED YET for %s\n", c.Identity)
		} else {
			fmt.Fprintf(tw, "Certificate:\tserial %s, expires in %s, by %s\n", short(c.Serial, 12), c.NotAfter.Sub(now).Round(time.Second), c.Issuer)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Failures) > 0 {
		fmt.Fprintln(w, "\nRECENT FAILURES")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tROLE\tPEER\tWHAT\tCODE\tFLAGS\tDETAIL")
		for _, f := range d.Failures {
			code := "-"
			if f.Code != 0 {
				code = fmt.Sprint(f.Code)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Time.Format("15:04:05"), f.Role, orDash(f.Peer, ""), f.What, code, f.Flags, f.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(d.Hints) > 0 {
		fmt.Fprintln(w, "\nNEXT STEPS")
		for _, h := range d.Hints {
			fmt.Fprintf(w, "  - %s\n", h)
		}
	}
	return nil
}
