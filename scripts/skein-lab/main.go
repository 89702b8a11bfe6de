package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCommand()
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return
	}
	// A command run by `exec` failed: pass its exit status on, as ssh and
	// kubectl exec do, without a message of our own.
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() > 0 {
		os.Exit(exitErr.ExitCode())
	}
	fmt.Fprintln(os.Stderr, "skein-lab:", err)
	os.Exit(1)
}

// globalFlags are the flags every lab command shares.
type globalFlags struct {
	prefix   string
	stateDir string
}

func newRootCommand() *cobra.Command {
	var g globalFlags
	root := &cobra.Command{
		Use:   "skein-lab",
		Short: "A small Kubernetes cluster of network namespaces and cgroups on one Linux machine, for Skein",
		Long: `skein-lab plays a Kubernetes cluster on one Linux machine: one network namespace
per node and per pod, veth pairs to the nodes, an underlay between nodes, one
cgroup per pod, the Kubernetes objects in a YAML file the Skein agents read, and
one agent per node. Everything is named from a prefix and stays inside the lab's
namespaces; "down" removes it all, even after a crash.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.prefix, "prefix", "skl", "prefix of every name the lab creates")
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "", "state directory (default /run/<prefix>)")
	root.AddCommand(newEchoCommand(), newConnectStormCommand(), newBlackholeCommand())
	root.AddCommand(newGRPCServerCommand(), newGRPCClientCommand(), newHTTPLoadCommand(),
		newUpgradeClientCommand(), newWebSocketClientCommand())
	addLabCommands(root, &g)
	return root
}
