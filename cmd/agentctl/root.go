package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/agent/admin"
)

// options are the global flags.
type options struct {
	socket string
	output string
	out    io.Writer
}

func (o *options) client() *admin.Client { return admin.NewClient(o.socket) }

// get fetches an admin API path into v with the default timeout.
func (o *options) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, admin.Timeout)
	defer cancel()
	return o.client().Get(ctx, path, v)
}

// print writes v as JSON or YAML when asked, else calls table.
func (o *options) print(v any, table func(io.Writer) error) error {
	switch o.output {
	case "json":
		enc := json.NewEncoder(o.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = o.out.Write(b)
		return err
	case "", "table", "wide":
		return table(o.out)
	}
	return fmt.Errorf("unknown output format %q: use table, json or yaml", o.output)
}

func newRoot(out io.Writer) *cobra.Command {
	o := &options{out: out}
	root := &cobra.Command{
		Use:           "agentctl",
		Short:         "Inspect and debug the Skein agent on this node",
		Version:       version + " (" + commit + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&o.socket, "socket", admin.DefaultSocket, "admin socket of the agent")
	root.PersistentFlags().StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp
	})
	root.SetOut(out)
	root.AddCommand(
		newStatusCmd(o),
		newWorkloadsCmd(o),
		newServicesCmd(o),
		newRoutesCmd(o),
		newEndpointsCmd(o),
		newConfigCmd(o),
		newCertsCmd(o),
		newTraceCmd(o),
		newBPFCmd(o),
		newDiagnoseCmd(o),
		newLogsCmd(o),
		newFlowsCmd(o),
	)
	return root
}
