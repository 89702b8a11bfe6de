package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Names of the metadata the gRPC test server adds to every RPC.
const (
	// grpcHostnameHeader is the response header that carries the pod name
	// on every RPC, the same key grpc-go's xDS interop server uses. Streams
	// have one header, so it names the pod that served the whole stream.
	grpcHostnameHeader = "hostname"
	// grpcEchoTrailerPrefix prefixes each request metadata key the server
	// returns in the trailer.
	grpcEchoTrailerPrefix = "x-echo-"
)

// Bounds of what a gRPC request may ask the test server for. A payload
// stays under grpc-go's default 4 MiB receive limit.
const (
	maxGRPCPayload  = 4<<20 - 1024
	maxGRPCInterval = 10 * time.Second
)

// testService is grpc.testing.TestService as the lab's test backend: every
// answer says which pod gave it, and every request can ask for a status code
// and payload sizes. HalfDuplexCall and UnimplementedCall answer
// Unimplemented.
type testService struct {
	testpb.UnimplementedTestServiceServer
	pod string
}

var _ testpb.TestServiceServer = (*testService)(nil)

func (s *testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// UnaryCall echoes the request's payload, truncated or zero-padded to
// ResponseSize when that is set, and answers with ResponseStatus when its
// code is not OK.
func (s *testService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := requestedStatus(in.GetResponseStatus()); err != nil {
		return nil, err
	}
	body := in.GetPayload().GetBody()
	if n := in.GetResponseSize(); n != 0 {
		if n < 0 || n > maxGRPCPayload {
			return nil, status.Errorf(codes.InvalidArgument, "response_size %d: want 0 to %d", n, maxGRPCPayload)
		}
		sized := make([]byte, n)
		copy(sized, body)
		body = sized
	}
	return &testpb.SimpleResponse{
		Payload:  &testpb.Payload{Type: in.GetResponseType(), Body: body},
		Hostname: s.pod,
		ServerId: s.pod,
	}, nil
}

// StreamingOutputCall answers one message per ResponseParameters entry.
func (s *testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := requestedStatus(in.GetResponseStatus()); err != nil {
		return err
	}
	return sendStreamingResponses(stream.Context(), in, stream.Send)
}

// StreamingInputCall adds up the payload sizes of all requests.
func (s *testService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var sum int32
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: sum})
		}
		if err != nil {
			return err
		}
		sum += int32(len(in.GetPayload().GetBody()))
	}
}

// FullDuplexCall answers each request as it arrives, before reading the
// next: one message per ResponseParameters entry, or, without any, one
// message echoing the request's payload. A request with ResponseStatus ends
// the stream with that status.
func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := requestedStatus(in.GetResponseStatus()); err != nil {
			return err
		}
		if len(in.GetResponseParameters()) == 0 {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
				return err
			}
			continue
		}
		if err := sendStreamingResponses(stream.Context(), in, stream.Send); err != nil {
			return err
		}
	}
}

// sendStreamingResponses sends one message per ResponseParameters entry of
// in, with a payload of the size it asks for, after its interval.
func sendStreamingResponses(ctx context.Context, in *testpb.StreamingOutputCallRequest, send func(*testpb.StreamingOutputCallResponse) error) error {
	for _, p := range in.GetResponseParameters() {
		if p.GetSize() < 0 || p.GetSize() > maxGRPCPayload {
			return status.Errorf(codes.InvalidArgument, "response_parameters.size %d: want 0 to %d", p.GetSize(), maxGRPCPayload)
		}
		if us := p.GetIntervalUs(); us > 0 {
			d := min(time.Duration(us)*time.Microsecond, maxGRPCInterval)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		resp := &testpb.StreamingOutputCallResponse{
			Payload: &testpb.Payload{Type: in.GetResponseType(), Body: make([]byte, p.GetSize())},
		}
		if p.GetFillPeerSocketAddress().GetValue() {
			if pr, ok := peer.FromContext(ctx); ok {
				resp.PeerSocketAddress = pr.Addr.String()
			}
		}
		if err := send(resp); err != nil {
			return err
		}
	}
	return nil
}

// requestedStatus is the error a request asks to be answered with, or nil.
func requestedStatus(st *testpb.EchoStatus) error {
	if st.GetCode() == 0 {
		return nil
	}
	return status.Error(codes.Code(st.GetCode()), st.GetMessage())
}

// echoTrailer returns the incoming metadata as trailer metadata, each key
// prefixed with x-echo-; a pseudo-header such as :authority loses its colon.
func echoTrailer(ctx context.Context) metadata.MD {
	in, _ := metadata.FromIncomingContext(ctx)
	out := make(metadata.MD, len(in))
	for k, vs := range in {
		out[grpcEchoTrailerPrefix+strings.TrimPrefix(k, ":")] = vs
	}
	return out
}

// unaryPodInterceptor sends the hostname header and the x-echo- trailer on
// every unary RPC, whatever its outcome.
func (s *testService) unaryPodInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := grpc.SetHeader(ctx, metadata.Pairs(grpcHostnameHeader, s.pod)); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, echoTrailer(ctx)); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// streamPodInterceptor sends the hostname header and the x-echo- trailer on
// every stream, whatever its outcome.
func (s *testService) streamPodInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := ss.SetHeader(metadata.Pairs(grpcHostnameHeader, s.pod)); err != nil {
		return err
	}
	ss.SetTrailer(echoTrailer(ss.Context()))
	return handler(srv, ss)
}

// serveGRPC serves the test service and the health service on listen until
// ctx ends, then stops gracefully (bounded).
func serveGRPC(ctx context.Context, listen, pod string, ready func(net.Addr)) error {
	var lc net.ListenConfig
	// As in serveEcho: no MPTCP, which a SOCKMAP refuses.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	svc := &testService{pod: pod}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(svc.unaryPodInterceptor),
		grpc.ChainStreamInterceptor(svc.streamPodInterceptor),
	)
	testpb.RegisterTestServiceServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(testpb.TestService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve gRPC on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		srv.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func newGRPCServerCommand() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "grpc-server",
		Short: "Serve grpc.testing.TestService and grpc.health.v1.Health over h2c (a gRPC test backend)",
		Long: `grpc-server serves grpc.testing.TestService (grpc-go's interop service) and the
standard health service over plaintext HTTP/2. The pod name comes from
SKEIN_LAB_POD, else the host name.

Every RPC answers with the response header "hostname: <pod>" and a trailer
that echoes each request metadata key as "x-echo-<key>" (":authority" becomes
"x-echo-authority"), so a test sees what the mesh injected, e.g. traceparent.
  UnaryCall            SimpleResponse.hostname (and server_id) = pod; echoes
                       the payload, sized to response_size if that is set;
                       response_status {code, message} answers that status
  FullDuplexCall       answers each request before reading the next: one
                       message per response_parameters entry with a payload
                       of that size, or one echoing the payload without any;
                       the pod is in the stream's "hostname" header only, so
                       payload sizes stay exactly as asked
  StreamingOutputCall  one message per response_parameters entry
  StreamingInputCall   aggregated_payload_size of all requests
  EmptyCall            empty
Payloads are at most 4 MiB - 1 KiB; response_parameters intervals at most 10s.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serveGRPC(ctx, listen, labPodName(), func(addr net.Addr) {
				fmt.Fprintf(cmd.ErrOrStderr(), "grpc-server: serving grpc.testing.TestService on %s\n", addr)
			})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":9000", "address to listen on")
	return cmd
}

// labPodName is the pod name the lab's test backends report: SKEIN_LAB_POD,
// else the host name.
func labPodName() string {
	if pod := os.Getenv("SKEIN_LAB_POD"); pod != "" {
		return pod
	}
	h, _ := os.Hostname()
	return h
}
