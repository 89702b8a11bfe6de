package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

func newCertsCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "certs",
		Short: "List each local workload's certificate: identity, serial, issuer, expiry, renewal; and the trust bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var c admin.Certs
			if err := o.get(cmd.Context(), admin.APIVersion+"/certs", &c); err != nil {
				return err
			}
			return o.print(c, func(w io.Writer) error { return renderCerts(w, c, time.Now()) })
		},
	}
}

func renderCerts(w io.Writer, c admin.Certs, now time.Time) error {
	if !c.Enabled {
		fmt.Fprintln(w, "No CA configured (--ca-address): no workload certificates, traffic between nodes is not mTLS.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tSERIAL\tISSUER\tEXPIRES\tRENEWS")
	for _, x := range c.Certificates {
		if x.NotAfter.IsZero() {
			fmt.Fprintf(tw, "%s\t-\t-\tNOT ISSUED YET\t-\n", x.Identity)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (in %s)\t%s\n", x.Identity, short(x.Serial, 12), x.Issuer,
			x.NotAfter.Format(time.RFC3339), x.NotAfter.Sub(now).Round(time.Second), x.RenewAt.Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nTRUST BUNDLE")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range c.Roots {
		fmt.Fprintf(tw, "  %s\tserial %s\texpires %s\n", r.Subject, short(r.Serial, 12), r.NotAfter.Format(time.RFC3339))
	}
	return tw.Flush()
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
