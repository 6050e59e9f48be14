// A grpc-go peer built from the original r3map's protos, behaving like the
// original's BackendService (pkg/services/backend_service.go): ReadAt capped
// at 32 MiB, WriteAt uncapped, errors returned as plain errors (codes.Unknown).
//
//	go-peer server <size>                 serve an empty in-memory resource; prints "listening <port>"
//	go-peer client <host:port> <token>    write, read back and sync on our server; prints "ok" and checks auth
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	mountv1 "r3map.test/gopeer/gen/mount/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const maxChunkSize = 32 * 1024 * 1024

var errMaxChunkSizeExceeded = errors.New("max chunk size exceeded")

type memoryBackend struct {
	mountv1.UnimplementedBackendServer
	mu   sync.Mutex
	data []byte
}

func (b *memoryBackend) ReadAt(_ context.Context, args *mountv1.ReadAtArgs) (*mountv1.ReadAtReply, error) {
	if args.GetLength() > maxChunkSize {
		return nil, errMaxChunkSizeExceeded
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	off := args.GetOff()
	if off < 0 || off+int64(args.GetLength()) > int64(len(b.data)) {
		return nil, errors.New("EOF")
	}
	p := make([]byte, args.GetLength())
	n := copy(p, b.data[off:])
	return &mountv1.ReadAtReply{N: int32(n), P: p}, nil
}

func (b *memoryBackend) WriteAt(_ context.Context, args *mountv1.WriteAtArgs) (*mountv1.WriteAtReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	off := args.GetOff()
	if off < 0 || off+int64(len(args.GetP())) > int64(len(b.data)) {
		return nil, errors.New("write out of range")
	}
	n := copy(b.data[off:], args.GetP())
	return &mountv1.WriteAtReply{Length: int32(n)}, nil
}

func (b *memoryBackend) Sync(context.Context, *mountv1.SyncArgs) (*mountv1.SyncReply, error) {
	return &mountv1.SyncReply{}, nil
}

func serve(size int) error {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	mountv1.RegisterBackendServer(server, &memoryBackend{data: make([]byte, size)})
	fmt.Printf("listening %d\n", listener.Addr().(*net.TCPAddr).Port)
	// The test closes our stdin to stop us; exit then, whatever the server is doing.
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := os.Stdin.Read(buf); err != nil {
				os.Exit(0)
			}
		}
	}()
	return server.Serve(listener)
}

func client(address, token string) error {
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	backend := mountv1.NewBackendClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := backend.WriteAt(ctx, &mountv1.WriteAtArgs{Off: 0, P: []byte("x")}); status.Code(err) != codes.Unauthenticated {
		return fmt.Errorf("a call without a token: want Unauthenticated, got %v", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	payload := bytes.Repeat([]byte("r3map-go-peer"), 10000)
	written, err := backend.WriteAt(authed, &mountv1.WriteAtArgs{Off: 4096, P: payload})
	if err != nil {
		return fmt.Errorf("WriteAt: %w", err)
	}
	if int(written.GetLength()) != len(payload) {
		return fmt.Errorf("WriteAt reported %d bytes, want %d", written.GetLength(), len(payload))
	}
	read, err := backend.ReadAt(authed, &mountv1.ReadAtArgs{Length: int32(len(payload)), Off: 4096})
	if err != nil {
		return fmt.Errorf("ReadAt: %w", err)
	}
	if int(read.GetN()) != len(payload) || !bytes.Equal(read.GetP(), payload) {
		return fmt.Errorf("ReadAt returned %d bytes that differ from what was written", read.GetN())
	}
	if _, err := backend.Sync(authed, &mountv1.SyncArgs{}); err != nil {
		return fmt.Errorf("Sync: %w", err)
	}
	_, err = backend.ReadAt(authed, &mountv1.ReadAtArgs{Length: 16, Off: 1 << 40})
	if status.Code(err) != codes.OutOfRange {
		return fmt.Errorf("ReadAt past the end: want OutOfRange, got %v", err)
	}
	fmt.Println("ok")
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "server":
		var size int
		if size, err = strconv.Atoi(os.Args[2]); err == nil {
			err = serve(size)
		}
	case len(os.Args) == 4 && os.Args[1] == "client":
		err = client(os.Args[2], os.Args[3])
	default:
		err = errors.New("usage: go-peer server <size> | go-peer client <host:port> <token>")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
