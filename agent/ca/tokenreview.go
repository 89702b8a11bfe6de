package ca

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeNameExtra is where a bound ServiceAccount token of a pod carries the
// name of the node the pod runs on (Kubernetes 1.30+, GA in 1.32).
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// TokenReview authenticates agents in Kubernetes: the bearer token must be a
// valid ServiceAccount token of the agent's ServiceAccount, bound to a pod,
// and the node the CA signs for is the node of that pod, as the API server
// says it in the token's review.
type TokenReview struct {
	client kubernetes.Interface
	// users are the accepted "system:serviceaccount:<ns>:<name>" users.
	users     map[string]bool
	audiences []string
}

var _ Authenticator = (*TokenReview)(nil)

// NewTokenReview accepts tokens of the given service accounts
// ("namespace/name"), for the given audiences (empty: the API server's).
func NewTokenReview(client kubernetes.Interface, serviceAccounts, audiences []string) (*TokenReview, error) {
	if len(serviceAccounts) == 0 {
		return nil, errors.New("token review: name the agent's service account (--agent-service-account namespace/name)")
	}
	users := map[string]bool{}
	for _, sa := range serviceAccounts {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("token review: service account %q: want namespace/name", sa)
		}
		users["system:serviceaccount:"+ns+":"+name] = true
	}
	return &TokenReview{client: client, users: users, audiences: audiences}, nil
}

// Authenticate implements Authenticator.
func (t *TokenReview) Authenticate(ctx context.Context, r *http.Request) (Caller, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return Caller{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rev, err := t.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: tok, Audiences: t.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return Caller{}, fmt.Errorf("token review: %w", err)
	}
	st := rev.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "token not valid"
		}
		return Caller{}, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	if !t.users[st.User.Username] {
		return Caller{}, fmt.Errorf("%w: %s is not an agent's service account", ErrUnauthenticated, st.User.Username)
	}
	nodes := st.User.Extra[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return Caller{}, fmt.Errorf("%w: the token of %s names no node: use a bound token projected into the agent pod", ErrUnauthenticated, st.User.Username)
	}
	return Caller{Node: nodes[0], Name: st.User.Username}, nil
}
