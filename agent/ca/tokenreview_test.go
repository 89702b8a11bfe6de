package ca

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeReviews answers TokenReviews from a table: token -> status.
func fakeReviews(statuses map[string]authnv1.TokenReviewStatus) *fake.Clientset {
	c := fake.NewSimpleClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		tr.Status = statuses[tr.Spec.Token]
		return true, tr, nil
	})
	return c
}

func TestTokenReview(t *testing.T) {
	agent := "system:serviceaccount:skein-system:skein-agent"
	c := fakeReviews(map[string]authnv1.TokenReviewStatus{
		"good": {Authenticated: true, User: authnv1.UserInfo{Username: agent,
			Extra: map[string]authnv1.ExtraValue{NodeNameExtra: {"node-a"}}}},
		"other-sa": {Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:shop:client",
			Extra: map[string]authnv1.ExtraValue{NodeNameExtra: {"node-a"}}}},
		"unbound": {Authenticated: true, User: authnv1.UserInfo{Username: agent}},
		"expired": {Authenticated: false, Error: "token has expired"},
	})
	tr, err := NewTokenReview(c, []string{"skein-system/skein-agent"}, nil)
	require.NoError(t, err)
	tests := []struct {
		token, node, err string
	}{
		{"good", "node-a", ""},
		{"other-sa", "", "is not an agent's service account"},
		{"unbound", "", "names no node"},
		{"expired", "", "token has expired"},
		{"", "", "no bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodPost, "/v1/sign", nil)
			if tt.token != "" {
				r.Header.Set("Authorization", "Bearer "+tt.token)
			}
			caller, err := tr.Authenticate(context.Background(), r)
			if tt.err != "" {
				require.ErrorIs(t, err, ErrUnauthenticated)
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.node, caller.Node)
		})
	}
	_, err = NewTokenReview(c, []string{"nonamespace"}, nil)
	require.Error(t, err)
}
