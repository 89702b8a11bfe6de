package balancer_test

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/skeinmesh/skein/l7proxy/balancer"
)

// The proxy keeps balancers in a Registry, picks an endpoint per request and
// reports the outcome.
func Example() {
	policy, err := balancer.ParsePolicy("round-robin") // the skein.io/lb-policy annotation
	if err != nil {
		panic(err)
	}
	reg := balancer.NewRegistry(nil)
	eps := []balancer.Addr{
		netip.MustParseAddrPort("192.0.2.1:8080"),
		netip.MustParseAddrPort("192.0.2.2:8080"),
	}
	b, err := reg.Get("shop/product:80", balancer.Config{Policy: policy}, eps)
	if err != nil {
		panic(err)
	}
	for range 3 {
		h, err := b.Pick()
		switch {
		case errors.Is(err, balancer.ErrNoEndpoints): // 503, flag UH
			return
		case errors.Is(err, balancer.ErrOverflow): // 503, flag UO
			return
		}
		fmt.Println("send to", h.Addr())
		h.Done(balancer.Result{Status: 200, Latency: 3 * time.Millisecond})
	}
	// Output:
	// send to 192.0.2.1:8080
	// send to 192.0.2.2:8080
	// send to 192.0.2.1:8080
}

// A retry budget lets 20% of requests, plus 10 per second, be retried.
func ExampleRetryBudget() {
	budget, err := balancer.NewRetryBudget(balancer.DefaultRetryRatio,
		balancer.DefaultMinRetriesPerSecond, balancer.DefaultRetryTTL, nil)
	if err != nil {
		panic(err)
	}
	for range 50 {
		budget.Deposit() // every original request
	}
	fmt.Println(budget.Available())
	fmt.Println(budget.Withdraw()) // before every retry
	// Output:
	// 110
	// true
}
