// Command skein-ca is Skein's certificate authority: it signs workload
// certificates (X.509 SVIDs) for node agents, only for workloads on the
// requesting agent's node. The root key never leaves it.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/agent/ca"
	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/agent/source"
)

var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skein-ca:", err)
		os.Exit(1)
	}
}

type flags struct {
	dir, trustDomain string
}

func newCommand() *cobra.Command {
	var f flags
	root := &cobra.Command{
		Use:           "skein-ca",
		Short:         "Skein's workload certificate authority",
		Version:       version + " (" + commit + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&f.dir, "dir", "/var/lib/skein-ca", "directory of the root keys (mode 0700)")
	root.PersistentFlags().StringVar(&f.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain")
	root.AddCommand(newServeCmd(&f), newRotateCmd(&f), newRetireCmd(&f))
	return root
}

func open(f *flags) (*ca.LocalCA, error) {
	return ca.LoadOrCreate(ca.LocalConfig{Dir: f.dir, TrustDomain: f.trustDomain})
}

func newServeCmd(f *flags) *cobra.Command {
	var (
		addr, tokenFile, rootsOut string
		configs, dnsNames, ips    []string
		maxTTL                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the signing API over TLS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := zap.NewProduction()
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // at exit
			local, err := ca.LoadOrCreate(ca.LocalConfig{Dir: f.dir, TrustDomain: f.trustDomain, MaxTTL: maxTTL})
			if err != nil {
				return err
			}
			var netIPs []net.IP
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--serving-ip %q is not an IP address", s)
				}
				netIPs = append(netIPs, ip)
			}
			der, key, err := local.ServingCertificate(dnsNames, netIPs, 365*24*time.Hour)
			if err != nil {
				return fmt.Errorf("issue serving certificate: %w", err)
			}
			if rootsOut != "" {
				if err := writeAtomic(rootsOut, ca.EncodePEM(local.Bundle())); err != nil {
					return err
				}
			}
			if tokenFile == "" {
				return fmt.Errorf("--token-file is required: the CA signs only for authenticated agents")
			}
			authn, err := ca.NewTokenFile(tokenFile)
			if err != nil {
				return err
			}
			if len(configs) == 0 {
				return fmt.Errorf("--config is required: the CA checks each workload's node against the cluster objects")
			}
			pods := &ca.SnapshotLocator{}
			files, err := source.NewFiles(source.FilesConfig{Paths: configs}, log)
			if err != nil {
				return err
			}
			srv, err := ca.NewServer(ca.ServerConfig{
				Addr: addr, Signer: local, Authn: authn, Pods: pods,
				TLS: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
			}, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() {
				var last *model.Snapshot
				_ = files.Run(ctx, func(u source.Update) {
					snap, _ := model.Merge(last, u.Objects)
					last = snap
					pods.Update(snap)
				})
			}()
			go reloadRoots(ctx, local, rootsOut, log)
			log.Info("skein-ca serving", zap.String("addr", addr), zap.String("trust_domain", f.trustDomain), zap.Int("roots", len(local.Bundle())))
			return srv.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", ":15012", "address of the signing API")
	fl.StringVar(&tokenFile, "token-file", "", `agent tokens, one "<token> <node>" per line (standalone mode)`)
	fl.StringSliceVar(&configs, "config", nil, "YAML file or directory of the cluster's objects, to check which node a workload runs on")
	fl.StringSliceVar(&dnsNames, "serving-dns", []string{"skein-ca", "skein-ca.skein-system.svc"}, "DNS names of the CA's serving certificate")
	fl.StringSliceVar(&ips, "serving-ip", nil, "IP addresses of the CA's serving certificate")
	fl.StringVar(&rootsOut, "roots-out", "", "write the trust bundle (PEM) here, for agents to verify the CA; rewritten on rotation")
	fl.DurationVar(&maxTTL, "max-ttl", 24*time.Hour, "longest workload certificate lifetime")
	return cmd
}

// reloadRoots picks up rotations and retirements made by `skein-ca rotate`
// and `skein-ca retire`.
func reloadRoots(ctx context.Context, local *ca.LocalCA, rootsOut string, log *zap.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	last := bundleKey(local.Bundle())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := local.Reload(); err != nil {
			log.Warn("reload roots", zap.Error(err))
			continue
		}
		b := local.Bundle()
		if k := bundleKey(b); k != last {
			log.Info("trust bundle changed", zap.Int("roots", len(b)), zap.String("signing_root", b[0].SerialNumber.Text(16)))
			last = k
		}
		if rootsOut != "" {
			if err := writeAtomic(rootsOut, ca.EncodePEM(b)); err != nil {
				log.Warn("write trust bundle", zap.Error(err))
			}
		}
	}
}

// bundleKey identifies a bundle by its roots' serials, signer first.
func bundleKey(b []*x509.Certificate) string {
	var s strings.Builder
	for _, c := range b {
		s.WriteString(c.SerialNumber.Text(16))
		s.WriteByte(' ')
	}
	return s.String()
}

func newRotateCmd(f *flags) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new root the signer; the old one stays trusted until retire",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			local, err := open(f)
			if err != nil {
				return err
			}
			if err := local.Rotate(ttl); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new signing root %s; %d roots trusted\n", local.Bundle()[0].SerialNumber.Text(16), len(local.Bundle()))
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "root-ttl", 10*365*24*time.Hour, "lifetime of the new root")
	return cmd
}

func newRetireCmd(f *flags) *cobra.Command {
	return &cobra.Command{
		Use:   "retire",
		Short: "Stop trusting every root but the signing one (after the longest certificate lifetime has passed since rotate)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			local, err := open(f)
			if err != nil {
				return err
			}
			if err := local.Retire(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d root trusted\n", len(local.Bundle()))
			return nil
		},
	}
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
