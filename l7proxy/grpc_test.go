package l7proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcBackend is a TestService whose streams echo until a request asks for
// a status, which ends the stream at once (the client still sending).
type grpcBackend struct {
	testpb.UnimplementedTestServiceServer
	name string
}

func (s *grpcBackend) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if c := in.GetResponseStatus().GetCode(); c != 0 {
		return nil, status.Error(codes.Code(c), in.GetResponseStatus().GetMessage())
	}
	return &testpb.SimpleResponse{Hostname: s.name}, nil
}

func (s *grpcBackend) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	_ = stream.SendHeader(metadata.Pairs("hostname", s.name))
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if c := in.GetResponseStatus().GetCode(); c != 0 {
			return status.Error(codes.Code(c), "asked for")
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

func startGRPCBackend(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &grpcBackend{name: name})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return netip.MustParseAddrPort(ln.Addr().String())
}

// grpcClient dials the proxy through the harness, as a captured app would.
func (h *harness) grpcClient(t *testing.T, dst netip.AddrPort) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+dst.String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return h.dialCaptured(t, dst.String(), nil)
		}))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func TestGRPCThroughTheProxy(t *testing.T) {
	a, b := startGRPCBackend(t, "a"), startGRPCBackend(t, "b")
	h := newHarness(t, Config{})
	vip := netip.MustParseAddrPort("10.96.0.30:9000")
	h.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{
		vip: {Namespace: "shop", Name: "grpc", Port: 9000, Protocol: ProtocolGRPC, Endpoints: []*Endpoint{{Addr: a}, {Addr: b}}},
	}})
	client := h.grpcClient(t, vip)

	t.Run("unary calls are balanced per call over one connection", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
			cancel()
			require.NoError(t, err)
			seen[r.GetHostname()]++
		}
		require.Len(t, seen, 2, "%v", seen)
	})

	t.Run("a unary status passes through", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied)}})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})

	t.Run("bidirectional streaming", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := client.FullDuplexCall(ctx)
		require.NoError(t, err)
		for i := 0; i < 5; i++ {
			require.NoError(t, s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte{byte(i)}}}))
			r, err := s.Recv()
			require.NoError(t, err)
			require.Equal(t, []byte{byte(i)}, r.GetPayload().GetBody())
		}
		require.NoError(t, s.CloseSend())
		_, err = s.Recv()
		require.ErrorIs(t, err, io.EOF)
	})

	t.Run("a stream ended with a status while the client still sends gets that status, not a deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := client.FullDuplexCall(ctx)
		require.NoError(t, err)
		require.NoError(t, s.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied)}}))
		_, err = s.Recv()
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	})
}
