// Command skein-ca is Skein's certificate authority: it signs workload
// certificates (X.509 SVIDs) for node agents, only for workloads on the
// requesting agent's node. The root key never leaves it.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/agent/ca"
	kubesrc "github.com/skeinmesh/skein/agent/kube"
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
	root.AddCommand(newServeCmd(&f), newInitCmd(&f), newRotateCmd(&f), newRetireCmd(&f))
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
		kubeconfig, rootsCM       string
		inCluster                 bool
		agentSAs, audiences       []string
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
			kube := kubeconfig != "" || inCluster
			var (
				authn ca.Authenticator
				src   interface {
					Run(context.Context, func(source.Update)) error
				}
				client kubernetes.Interface
			)
			switch {
			case kube && (tokenFile != "" || len(configs) > 0):
				return fmt.Errorf("choose Kubernetes (--kubeconfig or --in-cluster) or standalone (--token-file and --config), not both")
			case kube:
				// Agents are authenticated with TokenReview; pods are
				// read from the API.
				rc, err := kubesrc.RESTConfig(kubeconfig)
				if err != nil {
					return err
				}
				clients, err := kubesrc.NewClients(rc)
				if err != nil {
					return err
				}
				client = clients.Kube
				if authn, err = ca.NewTokenReview(client, agentSAs, audiences); err != nil {
					return err
				}
				ks, err := kubesrc.New(kubesrc.Config{Clients: clients, UserAgent: "skein-ca"}, log)
				if err != nil {
					return err
				}
				src = ks
			default:
				if tokenFile == "" {
					return fmt.Errorf("--token-file is required: the CA signs only for authenticated agents (or run against Kubernetes with --in-cluster)")
				}
				if authn, err = ca.NewTokenFile(tokenFile); err != nil {
					return err
				}
				if len(configs) == 0 {
					return fmt.Errorf("--config is required: the CA checks each workload's node against the cluster objects")
				}
				files, err := source.NewFiles(source.FilesConfig{Paths: configs}, log)
				if err != nil {
					return err
				}
				src = files
			}
			pods := &ca.SnapshotLocator{}
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
				_ = src.Run(ctx, func(u source.Update) {
					snap, _ := model.Merge(last, u.Objects)
					last = snap
					pods.Update(snap)
				})
			}()
			publish := func(b []*x509.Certificate) error {
				var errs []error
				if rootsOut != "" {
					errs = append(errs, writeAtomic(rootsOut, ca.EncodePEM(b)))
				}
				if rootsCM != "" && client != nil {
					errs = append(errs, publishConfigMap(ctx, client, rootsCM, ca.EncodePEM(b)))
				}
				return errors.Join(errs...)
			}
			if err := publish(local.Bundle()); err != nil {
				log.Warn("publish the trust bundle", zap.Error(err))
			}
			go reloadRoots(ctx, local, publish, log)
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
	fl.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig: authenticate agents with TokenReview and read pods from this API server")
	fl.BoolVar(&inCluster, "in-cluster", false, "like --kubeconfig, with the pod's service account")
	fl.StringSliceVar(&agentSAs, "agent-service-account", []string{"skein-system/skein-agent"}, "namespace/name of the agents' service account (Kubernetes mode)")
	fl.StringSliceVar(&audiences, "token-audience", nil, "audience the agents' projected tokens are bound to (Kubernetes mode)")
	fl.StringVar(&rootsCM, "roots-configmap", "", "namespace/name of a ConfigMap (key roots.pem) to publish the trust bundle in, for agents to mount")
	return cmd
}

// reloadRoots picks up rotations and retirements made by `skein-ca rotate`
// and `skein-ca retire` (or a new root Secret), and publishes the bundle.
func reloadRoots(ctx context.Context, local *ca.LocalCA, publish func([]*x509.Certificate) error, log *zap.Logger) {
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
		if err := publish(b); err != nil {
			log.Warn("publish trust bundle", zap.Error(err))
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

// publishConfigMap writes the bundle into an existing ConfigMap
// (namespace/name), key roots.pem, only when it changed.
func publishConfigMap(ctx context.Context, client kubernetes.Interface, ref string, pemData []byte) error {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		return fmt.Errorf("--roots-configmap %q: want namespace/name", ref)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get ConfigMap %s: %w", ref, err)
	}
	if cm.Data["roots.pem"] == string(pemData) {
		return nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data["roots.pem"] = string(pemData)
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update ConfigMap %s: %w", ref, err)
	}
	return nil
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

func newInitCmd(f *flags) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the root key and certificate in --dir (for a Kubernetes Secret), or show the existing one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			local, err := open(f)
			if err != nil {
				return err
			}
			for _, r := range local.Bundle() {
				fmt.Fprintf(cmd.OutOrStdout(), "root %s, %s, expires %s\n", r.SerialNumber.Text(16), r.Subject, r.NotAfter.Format(time.RFC3339))
			}
			return nil
		},
	}
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
