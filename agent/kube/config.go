package kube

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Config configures the API server source. Exactly one of Kubeconfig,
// InCluster and Clients says how to reach the API server.
type Config struct {
	// Kubeconfig is the path of a kubeconfig file; its current context is
	// used.
	Kubeconfig string
	// InCluster uses the pod's service account and KUBERNETES_SERVICE_HOST,
	// as the agent does when it runs as a DaemonSet.
	InCluster bool
	// Clients are ready-made clients (tests, embedding).
	Clients *Clients

	// UserAgent is sent with every request. Empty: client-go's default.
	UserAgent string
	// Debounce is how long the source waits after an event before it
	// delivers, so a burst is delivered once. Zero: 100ms.
	Debounce time.Duration
	// MaxDelay bounds how long a steady stream of events can postpone a
	// delivery. Zero: 1s.
	MaxDelay time.Duration
	// Resync is the informers' resync period: every Resync the complete
	// set is delivered again, even without events. Zero: never (a relist
	// after a watch error still delivers what changed).
	Resync time.Duration
	// DiscoveryInterval is how often the source looks again for optional
	// APIs (the Gateway API and AuthorizationPolicy CRDs) that were not
	// served, or that may have gone. Zero: 30s.
	DiscoveryInterval time.Duration
}

// Clients are the API clients the source uses.
type Clients struct {
	// Kube reads the core and discovery.k8s.io objects, and serves
	// discovery. Required.
	Kube kubernetes.Interface
	// Gateway reads HTTPRoutes and GRPCRoutes. Required.
	Gateway gatewayclient.Interface
	// Dynamic reads AuthorizationPolicies, which have no generated client.
	// Required.
	Dynamic dynamic.Interface
}

func (c *Config) setDefaults() {
	if c.Debounce == 0 {
		c.Debounce = 100 * time.Millisecond
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = time.Second
	}
	if c.MaxDelay < c.Debounce {
		c.MaxDelay = c.Debounce
	}
	if c.DiscoveryInterval == 0 {
		c.DiscoveryInterval = 30 * time.Second
	}
}

func (c *Config) validate() error {
	var errs []error
	n := 0
	for _, set := range []bool{c.Kubeconfig != "", c.InCluster, c.Clients != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs = append(errs, errors.New("set exactly one of a kubeconfig path, in-cluster mode or clients"))
	}
	if c.Clients != nil && (c.Clients.Kube == nil || c.Clients.Gateway == nil || c.Clients.Dynamic == nil) {
		errs = append(errs, errors.New("clients: Kube, Gateway and Dynamic are all required"))
	}
	if c.Debounce < 0 || c.MaxDelay < 0 || c.Resync < 0 || c.DiscoveryInterval < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

// RESTConfig loads the client configuration from a kubeconfig file, or the
// in-cluster configuration when path is empty.
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("load in-cluster config: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	return rc, nil
}

// NewClients builds the source's clients from a REST configuration. The
// core client speaks protobuf, which halves list sizes and decode time on
// large clusters; the CRD clients speak JSON, the only encoding CRDs have.
func NewClients(rc *rest.Config) (*Clients, error) {
	core := rest.CopyConfig(rc)
	core.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	core.ContentType = "application/vnd.kubernetes.protobuf"
	kc, err := kubernetes.NewForConfig(core)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client: %w", err)
	}
	gc, err := gatewayclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create gateway-api client: %w", err)
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create dynamic client: %w", err)
	}
	return &Clients{Kube: kc, Gateway: gc, Dynamic: dc}, nil
}

// clients returns cfg.Clients or builds them.
func (c *Config) clients() (*Clients, error) {
	if c.Clients != nil {
		return c.Clients, nil
	}
	rc, err := RESTConfig(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if c.UserAgent != "" {
		rc.UserAgent = c.UserAgent
	}
	// Informers only list and watch; a relist of every resource after an
	// API server restart should not queue behind client-side throttling.
	rc.QPS, rc.Burst = 20, 40
	return NewClients(rc)
}
