package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/agent/source"
)

// errInvalid makes agentctl exit non-zero without printing more.
var errInvalid = errors.New("configuration is invalid")

func newConfigCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with configuration files",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE...",
		Short: "Validate Kubernetes YAML offline, with the agent's own rules; exit 1 if anything is invalid",
		Long: `Validate files of Kubernetes objects (Namespaces, Pods, Services, EndpointSlices,
HTTPRoutes, GRPCRoutes, AuthorizationPolicies) with exactly the checks the agent applies, without
an agent. Each problem names the object, the field and the reason. Other kinds are skipped.
The exit status is 1 when anything is invalid, so it fits a CI pipeline.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			var objs []model.Object
			bad := 0
			for _, f := range files {
				fh, err := os.Open(f)
				if err != nil {
					return err
				}
				d, err := source.Decode(fh, f)
				fh.Close()
				if err != nil {
					fmt.Fprintln(o.out, err)
					bad++
					continue
				}
				for _, e := range d.Errors {
					fmt.Fprintln(o.out, e)
					bad++
				}
				objs = append(objs, d.Objects...)
			}
			snap, errs := model.Merge(nil, objs)
			for _, e := range errs {
				fmt.Fprintln(o.out, e)
				bad++
			}
			n := 0
			for _, c := range snap.Counts() {
				n += c
			}
			if bad > 0 {
				fmt.Fprintf(o.out, "%d problem(s); %d valid object(s)\n", bad, n)
				return errInvalid
			}
			fmt.Fprintf(o.out, "%d object(s) valid\n", n)
			return nil
		},
	})
	return cmd
}
