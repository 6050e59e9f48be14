// A grpc-go peer built from the original r3map's protos, behaving like the
// original's BackendService (pkg/services/backend_service.go): ReadAt capped
// at 32 MiB, WriteAt uncapped, errors returned as plain errors (codes.Unknown);
// and like the original's leecher over the Seeder service (pkg/migration).
//
//	go-peer server <size>                 serve an empty in-memory resource; prints "listening <port>"
//	go-peer client <host:port> <token>    write, read back and sync on our server; prints "ok" and checks auth
//	go-peer leech <host:port> <token> <size> <chunk-size> <workers>
//	                                      leech from a seeder as the original leecher does (see leech)
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	migrationv1 "r3map.test/gopeer/gen/migration/v1"
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

// leech takes a resource over from a seeder in the original leecher's wire
// order: Track; ReadAt of every chunk by a few concurrent workers while the
// seeder's application keeps writing (pre-copy); then — once "sync" arrives
// on stdin, so the caller decides when the last round comes — Sync, whose
// DirtyOffsets are read again; then Close. Prints "pulled <chunks>" after the
// pre-copy, "dirty <n>" after Sync and "sha256 <hex>" of what it holds at the end.
func leech(address, token string, size, chunkSize int64, workers int) error {
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	seeder := migrationv1.NewSeederClient(conn)
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if _, err := seeder.Track(ctx, &migrationv1.TrackArgs{}); err != nil {
		return fmt.Errorf("Track: %w", err)
	}
	local := make([]byte, size)
	readChunk := func(off int64) error {
		length := chunkSize
		if off+length > size {
			length = size - off
		}
		reply, err := seeder.ReadAt(ctx, &migrationv1.ReadAtArgs{Length: int32(length), Off: off})
		if err != nil {
			return fmt.Errorf("ReadAt %d: %w", off, err)
		}
		if int64(reply.GetN()) != length || int64(len(reply.GetP())) != length {
			return fmt.Errorf("ReadAt %d: got %d bytes (N=%d), want %d", off, len(reply.GetP()), reply.GetN(), length)
		}
		copy(local[off:], reply.GetP())
		return nil
	}

	offsets := make(chan int64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var pullErr error
	failedYet := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return pullErr != nil
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// After a failure the workers still drain the queue (without reading), so the loop below ends.
			for off := range offsets {
				if failedYet() {
					continue
				}
				if err := readChunk(off); err != nil {
					mu.Lock()
					if pullErr == nil {
						pullErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	chunks := 0
	for off := int64(0); off < size; off += chunkSize {
		offsets <- off
		chunks++
	}
	close(offsets)
	wg.Wait()
	if pullErr != nil {
		return pullErr
	}
	fmt.Printf("pulled %d\n", chunks)

	lines := bufio.NewScanner(os.Stdin)
	if !lines.Scan() || lines.Text() != "sync" {
		return errors.New(`expected "sync" on stdin`)
	}
	synced, err := seeder.Sync(ctx, &migrationv1.SyncArgs{})
	if err != nil {
		return fmt.Errorf("Sync: %w", err)
	}
	dirty := synced.GetDirtyOffsets()
	fmt.Printf("dirty %d\n", len(dirty))
	for _, off := range dirty {
		if off < 0 || off >= size || off%chunkSize != 0 {
			return fmt.Errorf("Sync returned offset %d, not a chunk of this resource", off)
		}
		if err := readChunk(off); err != nil {
			return err
		}
	}
	if _, err := seeder.Close(ctx, &migrationv1.CloseArgs{}); err != nil {
		return fmt.Errorf("Close: %w", err)
	}
	sum := sha256.Sum256(local)
	fmt.Printf("sha256 %s\n", hex.EncodeToString(sum[:]))
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
	case len(os.Args) == 7 && os.Args[1] == "leech":
		numbers := make([]int64, 3)
		for i, arg := range os.Args[4:7] {
			if numbers[i], err = strconv.ParseInt(arg, 10, 64); err != nil || numbers[i] <= 0 {
				err = fmt.Errorf("leech: %q is not a positive number", arg)
				break
			}
		}
		if err == nil {
			err = leech(os.Args[2], os.Args[3], numbers[0], numbers[1], int(numbers[2]))
		}
	default:
		err = errors.New("usage: go-peer server <size> | go-peer client <host:port> <token> | go-peer leech <host:port> <token> <size> <chunk-size> <workers>")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
