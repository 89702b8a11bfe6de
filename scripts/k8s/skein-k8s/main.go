// Command skein-k8s runs the Kubernetes API server of Skein's tests on this
// machine: `skein-k8s up` starts etcd and kube-apiserver on 127.0.0.1 in the
// background and prints the environment to use it, `env` prints it again,
// `down` stops everything and removes the state. scripts/k8s/cluster.sh
// builds and runs it.
//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/scripts/k8s"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skein-k8s:", err)
		os.Exit(1)
	}
}

func defaultDir() string {
	if os.Geteuid() == 0 {
		return "/run/skein-k8s"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "skein-k8s")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("skein-k8s-%d", os.Getuid()))
}

func newCommand() *cobra.Command {
	var dir string
	root := &cobra.Command{
		Use:           "skein-k8s",
		Short:         "A real kube-apiserver (no kubelets) on 127.0.0.1 for trying Skein against the Kubernetes API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&dir, "dir", defaultDir(), "state directory of the cluster")

	var timeout time.Duration
	up := &cobra.Command{
		Use:   "up",
		Short: "Build (once, cached) and start etcd and kube-apiserver, install the CRDs, print the environment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := k8s.Open(dir); err == nil {
				return fmt.Errorf("a cluster already runs in %s: run down first", dir)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			c, err := k8s.Up(ctx, k8s.Options{Dir: dir, Detach: true, Logf: func(f string, a ...any) {
				fmt.Fprintf(os.Stderr, f+"\n", a...)
			}})
			if err != nil {
				return err
			}
			printEnv(c)
			return nil
		},
	}
	up.Flags().DurationVar(&timeout, "timeout", 20*time.Minute, "bound on the whole start, including a first build of kube-apiserver")

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop etcd and kube-apiserver and remove the state directory",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := k8s.Open(dir)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			return c.Down()
		},
	}
	env := &cobra.Command{
		Use:   "env",
		Short: "Print the environment for kubectl and the agent: eval $(scripts/k8s/cluster.sh env)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := k8s.Open(dir)
			if err != nil {
				return err
			}
			printEnv(c)
			return nil
		},
	}
	root.AddCommand(up, down, env)
	return root
}

func printEnv(c *k8s.Cluster) {
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig())
	fmt.Printf("# API server %s; logs in %s\n", c.Server(), c.Dir())
}
