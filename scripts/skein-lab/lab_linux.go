package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/scripts/lab"
)

func addLabCommands(root *cobra.Command, g *globalFlags) {
	root.AddCommand(newUpCommand(g), newDownCommand(g), newExecCommand(g), newStatusCommand(g), newApplyCommand(g), newRestartAgentCommand(g))
}

func (g *globalFlags) options() lab.Options {
	return lab.Options{Prefix: g.prefix, StateDir: g.stateDir}
}

func newUpCommand(g *globalFlags) *cobra.Command {
	var (
		file      string
		agent     string
		noAgents  bool
		agentArgs []string
		quiet     bool
		caBin     string
		noCA      bool
	)
	cmd := &cobra.Command{
		Use:   "up -f TOPOLOGY",
		Short: "Build the lab from a topology file, start pod commands and agents, and exit",
		Long: `up removes what is left of a lab with the same prefix, builds the lab, starts
each pod's command and one agent per node, prints the lab and exits, leaving the
processes running. Without --agent it looks for skein-agent in ./bin and next
to skein-lab; --no-agents starts none. Pod commands find skein-lab on PATH.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topo, err := lab.Load(file)
			if err != nil {
				return err
			}
			opts := g.options()
			opts.AgentArgs = agentArgs
			if !quiet {
				opts.Logf = func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...) }
			}
			if !noAgents {
				opts.AgentBinary = agent
				if agent == "" {
					opts.AgentBinary = findAgent()
					if opts.AgentBinary == "" {
						fmt.Fprintln(cmd.ErrOrStderr(), "skein-lab: no skein-agent in ./bin or next to skein-lab: starting no agents (build it, or pass --agent PATH)")
					}
				}
			}
			if !noCA {
				opts.CABinary = caBin
				if caBin == "" {
					opts.CABinary = findBinary("skein-ca")
				}
			}
			if self, err := os.Executable(); err == nil {
				// So that pod commands such as `skein-lab echo` resolve.
				os.Setenv("PATH", filepath.Dir(self)+string(os.PathListSeparator)+os.Getenv("PATH"))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			l, err := lab.Up(ctx, topo, opts)
			if err != nil {
				return err
			}
			printLab(cmd.OutOrStdout(), l)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology file (YAML)")
	cmd.Flags().StringVar(&agent, "agent", "", "path to skein-agent (default: ./bin/skein-agent or next to skein-lab)")
	cmd.Flags().BoolVar(&noAgents, "no-agents", false, "start no agents")
	cmd.Flags().StringArrayVar(&agentArgs, "agent-arg", nil, "extra flag for every agent (repeatable)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress output")
	cmd.Flags().StringVar(&caBin, "ca", "", "path to skein-ca, started on the first node for mTLS between nodes (default: ./bin/skein-ca or next to skein-lab)")
	cmd.Flags().BoolVar(&noCA, "no-ca", false, "start no CA: traffic between nodes is plaintext")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// findAgent returns ./bin/skein-agent or skein-agent next to this program,
// whichever exists first.
func findAgent() string { return findBinary("skein-agent") }

// findBinary returns ./bin/<name> or <name> next to this program, whichever
// exists first.
func findBinary(name string) string {
	candidates := []string{filepath.Join("bin", name)}
	if self, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(self), name))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			abs, err := filepath.Abs(c)
			if err == nil {
				return abs
			}
		}
	}
	return ""
}

func newDownCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Kill every lab process and remove the lab's namespaces, cgroups, pins and state",
		Long: `down removes everything named with the prefix: it works after a crash, when
the lab is half built, and when there is no lab at all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lab.TeardownOptions(g.options())
		},
	}
}

func newExecCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "exec POD -- COMMAND [ARG...]",
		Short: "Run a command in a pod (its cgroup, then its network namespace)",
		Long: `exec runs a command in a lab pod, with this terminal's standard streams, and
exits with its status. POD is namespace/name, or a name if unique.`,
		Example: `  skein-lab exec client -- curl -s http://10.96.0.10/
  skein-lab exec shop/client -- sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(g.options())
			if err != nil {
				return err
			}
			// Signals from the terminal reach the command directly (same
			// process group); ignoring them here keeps skein-lab around to
			// pass its exit status on.
			signal.Ignore(os.Interrupt, syscall.SIGQUIT)
			return l.Attach(context.Background(), args[0], os.Stdin, os.Stdout, os.Stderr, args[1:]...)
		},
	}
}

func newApplyCommand(g *globalFlags) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE [-f FILE...]",
		Short: "Replace the lab's extra objects (HTTPRoutes, AuthorizationPolicies, ...) with those of the files",
		Long: `apply sets the Kubernetes objects the lab serves beside its pods and services
(the topology's "objects"): the agents see the change as a Kubernetes watch
would. Objects of earlier applies that the files do not hold are removed;
"apply" with an empty file removes them all.`,
		Example: `  skein-lab apply -f scripts/topologies/demo-routes.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("-f: give at least one file")
			}
			l, err := lab.Open(g.options())
			if err != nil {
				return err
			}
			var docs [][]byte
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				docs = append(docs, b)
			}
			return l.SetObjects(docs...)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "file of YAML documents (repeatable)")
	return cmd
}

func newRestartAgentCommand(g *globalFlags) *cobra.Command {
	var bin string
	cmd := &cobra.Command{
		Use:   "restart-agent NODE [--agent BINARY]",
		Short: "Start a new agent on a node beside the running one, as a rolling upgrade does",
		Long: `restart-agent starts a new agent on NODE while the current one runs: the new
agent takes the old one's listening sockets and pinned programs, and the old
one drains its connections and exits. --agent upgrades to another build.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(g.options())
			if err != nil {
				return err
			}
			return l.StartAgentSuccessor(args[0], bin)
		},
	}
	cmd.Flags().StringVar(&bin, "agent", "", "path to the new skein-agent (default: the lab's)")
	return cmd
}

func newStatusCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print the lab's nodes, pods, services and agents (from the state directory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Open(g.options())
			if errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "no lab with prefix %s\n", g.prefix)
				return nil
			}
			if err != nil {
				return err
			}
			printLab(cmd.OutOrStdout(), l)
			return nil
		},
	}
}

// printLab prints a short table of the lab.
func printLab(out io.Writer, l *lab.Lab) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "lab %s\tstate %s\tconfig %s\n\n", l.Prefix(), l.StateDir(), l.ClusterPath())
	fmt.Fprintln(w, "NODE\tIP\tPOD CIDR\tGATEWAY\tNETNS\tAGENT")
	for _, n := range l.Nodes() {
		agent := "-"
		if pid := l.AgentPid(n.Name); pid > 0 {
			agent = "pid " + strconv.Itoa(pid)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.IP, n.PodCIDR, n.Gateway, n.Netns, agent)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "POD\tNODE\tIP\tREADY\tNETNS")
	for _, p := range l.Pods() {
		fmt.Fprintf(w, "%s/%s\t%s\t%s\t%t\t%s\n", p.Namespace, p.Name, p.Node, p.IP, p.Ready, p.Netns)
	}
	if svcs := l.Services(); len(svcs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "SERVICE\tCLUSTER IP\tPORTS")
		for _, s := range svcs {
			var ports []string
			for _, p := range s.Ports {
				ports = append(ports, fmt.Sprintf("%d->%s", p.Port, targetText(p)))
			}
			fmt.Fprintf(w, "%s/%s\t%s\t%s\n", s.Namespace, s.Name, s.ClusterIP, strings.Join(ports, ","))
		}
	}
	w.Flush()
}

func targetText(p lab.ServicePort) string {
	if p.TargetPort.String() == "0" || p.TargetPort.String() == "" {
		return strconv.Itoa(int(p.Port))
	}
	return p.TargetPort.String()
}
