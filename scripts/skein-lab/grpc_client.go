package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// maxStreamMessages bounds --stream-messages.
const maxStreamMessages = 10000

// errBadResponse is the "errors" key of a call that succeeded but whose
// answer was not what the server is specified to send.
const errBadResponse = "BadResponse"

// grpcClientConfig is what one grpc-client run does.
type grpcClientConfig struct {
	// Target is the gRPC target, e.g. 10.96.0.20:9000 or dns:///name:9000.
	Target string
	// Calls is the number of calls to make, 1 to maxLoadCalls.
	Calls int
	// Concurrency is the number of calls in flight at once, 1 to
	// maxLoadConcurrency.
	Concurrency int
	// StreamMessages, when not 0, makes each call a FullDuplexCall that
	// sends this many messages, each answered before the next is sent.
	StreamMessages int
	// Deadline bounds each call; 0 means only Timeout bounds it.
	Deadline time.Duration
	// Timeout bounds the whole run; calls not started by then are not made.
	Timeout time.Duration
	// Metadata is sent with every call.
	Metadata metadata.MD
	// StatusCode, when not 0, asks the server to answer every call with
	// this gRPC status code.
	StatusCode codes.Code
}

func (c grpcClientConfig) validate() error {
	var errs []error
	if c.Target == "" {
		errs = append(errs, errors.New("--target: required, e.g. 10.96.0.20:9000"))
	}
	errs = append(errs, checkLoadBounds("calls", c.Calls, c.Concurrency))
	if c.StreamMessages < 0 || c.StreamMessages > maxStreamMessages {
		errs = append(errs, fmt.Errorf("--stream-messages %d: want 0 to %d", c.StreamMessages, maxStreamMessages))
	}
	if c.Deadline < 0 {
		errs = append(errs, fmt.Errorf("--deadline %s: want 0 (none) or more", c.Deadline))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: want more than 0", c.Timeout))
	}
	if c.StatusCode > 16 {
		errs = append(errs, fmt.Errorf("--status-code %d: want a gRPC status code from 0 to 16", c.StatusCode))
	}
	return errors.Join(errs...)
}

// grpcSummary is grpc-client's JSON output.
type grpcSummary struct {
	// Calls is the number of calls made; fewer than asked if --timeout ended the run.
	Calls int `json:"calls"`
	// OK is the number of calls that ended with status OK and the expected answer.
	OK int `json:"ok"`
	// Errors counts the failed calls by gRPC status code name
	// ("Unavailable"), or "BadResponse" for a wrong answer.
	Errors map[string]int `json:"errors"`
	// ByHost counts the successful calls by the pod that answered.
	ByHost map[string]int `json:"byHost"`
	// LatencyMs summarizes the latency of all calls made.
	LatencyMs latencySummary `json:"latencyMs"`
	// Trailers is the trailer metadata of the first call (call 0), values
	// joined with ", "; -bin values are base64.
	Trailers map[string]string `json:"trailers"`
	// Connections is the number of TCP connections the client established.
	Connections int64 `json:"connections"`
	// FirstError is the first failed call's error, for diagnosis.
	FirstError string `json:"firstError,omitempty"`
}

// grpcCallResult is the outcome of one call.
type grpcCallResult struct {
	host    string
	err     error
	trailer metadata.MD
	latency time.Duration
}

// runGRPCClient makes cfg.Calls calls over one ClientConn and summarizes
// them. It returns an error only when no call could reach the target.
func runGRPCClient(ctx context.Context, cfg grpcClientConfig) (grpcSummary, error) {
	if err := cfg.validate(); err != nil {
		return grpcSummary{}, err
	}
	dialer := newCountingDialer(5 * time.Second)
	conn, err := grpc.NewClient(cfg.Target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}),
		// One subchannel, one HTTP/2 connection: whatever spreads the calls
		// over backends is the mesh, not this client.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"pick_first":{}}]}`),
		grpc.WithDisableServiceConfig(),
	)
	if err != nil {
		return grpcSummary{}, fmt.Errorf("create gRPC client for %s: %w", cfg.Target, err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)

	runCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if len(cfg.Metadata) > 0 {
		runCtx = metadata.NewOutgoingContext(runCtx, cfg.Metadata)
	}

	sum := grpcSummary{Errors: map[string]int{}, ByHost: map[string]int{}, Trailers: map[string]string{}}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, cfg.Calls)
		next      atomic.Int64
		wg        sync.WaitGroup
	)
	for range min(cfg.Concurrency, cfg.Calls) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Calls || runCtx.Err() != nil {
					return
				}
				var r grpcCallResult
				if cfg.StreamMessages > 0 {
					r = streamCall(runCtx, client, cfg, i)
				} else {
					r = unaryCall(runCtx, client, cfg, i)
				}
				mu.Lock()
				sum.Calls++
				latencies = append(latencies, r.latency)
				if r.err == nil {
					sum.OK++
					sum.ByHost[r.host]++
				} else {
					sum.Errors[errorKind(r.err)]++
					if sum.FirstError == "" {
						sum.FirstError = r.err.Error()
					}
				}
				if i == 0 {
					sum.Trailers = flattenMD(r.trailer)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sum.LatencyMs = summarizeLatency(latencies)
	sum.Connections = dialer.dials.Load()
	switch {
	case sum.Calls == 0:
		return sum, fmt.Errorf("call %s: no call made within --timeout %s", cfg.Target, cfg.Timeout)
	case sum.Connections == 0:
		return sum, fmt.Errorf("call %s: no connection could be made: %s", cfg.Target, sum.FirstError)
	}
	return sum, nil
}

func callContext(ctx context.Context, cfg grpcClientConfig) (context.Context, context.CancelFunc) {
	if cfg.Deadline > 0 {
		return context.WithTimeout(ctx, cfg.Deadline)
	}
	return context.WithCancel(ctx)
}

func requestStatus(cfg grpcClientConfig) *testpb.EchoStatus {
	if cfg.StatusCode == codes.OK {
		return nil
	}
	return &testpb.EchoStatus{Code: int32(cfg.StatusCode), Message: "asked for by skein-lab grpc-client"}
}

// unaryCall makes call i as one UnaryCall and checks the payload comes back.
func unaryCall(ctx context.Context, client testpb.TestServiceClient, cfg grpcClientConfig, i int) grpcCallResult {
	ctx, cancel := callContext(ctx, cfg)
	defer cancel()
	body := fmt.Appendf(nil, "call-%d", i)
	var header, trailer metadata.MD
	start := time.Now()
	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{
		Payload:        &testpb.Payload{Body: body},
		ResponseStatus: requestStatus(cfg),
	}, grpc.Header(&header), grpc.Trailer(&trailer))
	r := grpcCallResult{latency: time.Since(start), err: err, trailer: trailer}
	if err != nil {
		return r
	}
	r.host = resp.GetHostname()
	if r.host == "" {
		r.host = firstValue(header, grpcHostnameHeader)
	}
	if !bytes.Equal(resp.GetPayload().GetBody(), body) {
		r.err = badResponse("UnaryCall payload %q, want %q", resp.GetPayload().GetBody(), body)
	}
	return r
}

// streamCall makes call i as one FullDuplexCall of cfg.StreamMessages
// messages, reading each answer before sending the next message, so that it
// fails unless the path carries both directions at once.
func streamCall(ctx context.Context, client testpb.TestServiceClient, cfg grpcClientConfig, i int) grpcCallResult {
	ctx, cancel := callContext(ctx, cfg)
	defer cancel()
	start := time.Now()
	r := grpcCallResult{}
	r.err = func() error {
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			return err
		}
		// The trailer is valid once Recv has returned an error or io.EOF.
		recv := func() (*testpb.StreamingOutputCallResponse, error) {
			resp, err := stream.Recv()
			if err != nil {
				r.trailer = stream.Trailer()
			}
			return resp, err
		}
		for j := range cfg.StreamMessages {
			size := int32(1 + (i+j)%1024)
			req := &testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: size}},
			}
			if j == 0 {
				req.ResponseStatus = requestStatus(cfg)
			}
			if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			// On io.EOF from Send the server has ended the stream; Recv
			// returns its status.
			resp, err := recv()
			if err != nil {
				return err
			}
			if got := len(resp.GetPayload().GetBody()); got != int(size) {
				return badResponse("FullDuplexCall message %d: payload of %d bytes, want %d", j, got, size)
			}
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		if _, err := recv(); !errors.Is(err, io.EOF) {
			if err == nil {
				return badResponse("FullDuplexCall: a message after the last answer")
			}
			return err
		}
		header, err := stream.Header()
		if err != nil {
			return err
		}
		r.host = firstValue(header, grpcHostnameHeader)
		return nil
	}()
	r.latency = time.Since(start)
	return r
}

// badResponseError is a call that succeeded with a wrong answer.
type badResponseError struct{ msg string }

func (e *badResponseError) Error() string { return e.msg }

func badResponse(format string, args ...any) error {
	return &badResponseError{msg: fmt.Sprintf(format, args...)}
}

// errorKind names a failed call's error for the "errors" counts.
func errorKind(err error) string {
	var bad *badResponseError
	if errors.As(err, &bad) {
		return errBadResponse
	}
	return status.Code(err).String()
}

func firstValue(md metadata.MD, key string) string {
	if vs := md.Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// flattenMD renders metadata as one string per key, binary values base64.
func flattenMD(md metadata.MD) map[string]string {
	out := make(map[string]string, len(md))
	for k, vs := range md {
		if strings.HasSuffix(k, "-bin") {
			enc := make([]string, len(vs))
			for i, v := range vs {
				enc[i] = base64.StdEncoding.EncodeToString([]byte(v))
			}
			vs = enc
		}
		out[k] = strings.Join(vs, ", ")
	}
	return out
}

// parseMetadataFlags turns repeated --metadata k=v flags into metadata,
// rejecting what grpc-go would refuse on every call.
func parseMetadataFlags(pairs []string) (metadata.MD, error) {
	md := metadata.MD{}
	var errs []error
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		k = strings.ToLower(k)
		switch {
		case !ok || k == "":
			errs = append(errs, fmt.Errorf("--metadata %q: want key=value", p))
		case strings.HasPrefix(k, "grpc-"):
			errs = append(errs, fmt.Errorf("--metadata %q: keys starting with grpc- are reserved", p))
		case strings.IndexFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) >= 0:
			errs = append(errs, fmt.Errorf("--metadata %q: a key has only a-z, 0-9, -, _ and .", p))
		case !strings.HasSuffix(k, "-bin") && strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0:
			errs = append(errs, fmt.Errorf("--metadata %q: a value has only printable ASCII (or name the key ...-bin)", p))
		default:
			md.Append(k, v)
		}
	}
	return md, errors.Join(errs...)
}

func newGRPCClientCommand() *cobra.Command {
	cfg := grpcClientConfig{}
	var (
		pairs      []string
		statusCode int
		output     string
	)
	cmd := &cobra.Command{
		Use:   "grpc-client --target HOST:PORT [--calls N] [--concurrency C] [--stream-messages M] [--deadline D] [--metadata k=v]... [--status-code N] [-o text|json]",
		Short: "Make gRPC calls over one HTTP/2 connection and count which pod answered each",
		Long: `grpc-client makes --calls calls to grpc.testing.TestService (see grpc-server)
over ONE plaintext gRPC connection with pick_first, --concurrency at a time,
so any spreading of calls over backends is the mesh's doing. Each call is a
UnaryCall, or with --stream-messages M a FullDuplexCall that sends M messages
and reads each answer before sending the next. It prints a summary:
  {"calls":N,"ok":n,"errors":{"Unavailable":k},"byHost":{"pod":x},
   "latencyMs":{"p50":..,"p90":..,"p99":..,"max":..},
   "trailers":{first call's trailer},"connections":c,"firstError":".."}
byHost counts successful calls by the pod that answered (SimpleResponse.hostname,
or the "hostname" header of a stream). It exits 0 whatever the calls' outcome,
and non-zero only for bad flags or when no call could reach the target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			md, err := parseMetadataFlags(pairs)
			if err != nil {
				return err
			}
			cfg.Metadata = md
			if statusCode < 0 {
				return fmt.Errorf("--status-code %d: want a gRPC status code from 0 to 16", statusCode)
			}
			cfg.StatusCode = codes.Code(statusCode)
			if err := cfg.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sum, runErr := runGRPCClient(ctx, cfg)
			if err := printGRPCSummary(cmd.OutOrStdout(), output, sum); err != nil {
				return err
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Target, "target", "", "gRPC target, e.g. 10.96.0.20:9000 (required)")
	f.IntVar(&cfg.Calls, "calls", 100, fmt.Sprintf("number of calls (at most %d)", maxLoadCalls))
	f.IntVar(&cfg.Concurrency, "concurrency", 1, fmt.Sprintf("calls in flight at once (at most %d)", maxLoadConcurrency))
	f.IntVar(&cfg.StreamMessages, "stream-messages", 0, fmt.Sprintf("make each call a FullDuplexCall of this many messages (at most %d)", maxStreamMessages))
	f.DurationVar(&cfg.Deadline, "deadline", 2*time.Second, "deadline of each call (0: none)")
	f.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "bound on the whole run")
	f.StringArrayVar(&pairs, "metadata", nil, "metadata key=value sent with every call (repeatable)")
	f.IntVar(&statusCode, "status-code", 0, "ask the server to answer every call with this gRPC status code")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printGRPCSummary(w io.Writer, format string, s grpcSummary) error {
	if format == "json" {
		return writeJSON(w, s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "calls %d, ok %d, connections %d\n", s.Calls, s.OK, s.Connections)
	fmt.Fprintf(&b, "errors: %s\n", formatCounts(s.Errors))
	fmt.Fprintf(&b, "by host: %s\n", formatCounts(s.ByHost))
	fmt.Fprintf(&b, "latency ms: p50 %.3f, p90 %.3f, p99 %.3f, max %.3f\n", s.LatencyMs.P50, s.LatencyMs.P90, s.LatencyMs.P99, s.LatencyMs.Max)
	fmt.Fprintf(&b, "trailers of call 0: %s\n", formatStrings(s.Trailers))
	if s.FirstError != "" {
		fmt.Fprintf(&b, "first error: %s\n", s.FirstError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
