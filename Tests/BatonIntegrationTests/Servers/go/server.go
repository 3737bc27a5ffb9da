// A Go HTTP server as Baton runs it (Docs/wrapping.md; tested by
// ThirdPartyServerTests.goServerTakesFd3). Its listener is the socket Baton passes at
// fd 3; it says READY=1 on NOTIFY_SOCKET as it starts serving; SIGTERM drains it.
// Build it static: CGO_ENABLED=0 go build -o server server.go
package main

import (
	"context"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listener, err := net.FileListener(os.NewFile(3, "http"))
	if err != nil {
		log.Fatalf("fd 3: %v", err)
	}
	pid := strconv.Itoa(os.Getpid())
	var draining atomic.Bool
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", pid)
		if draining.Load() {
			// net/http closes the connection after this response.
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte("served by Go\n"))
	})}

	drained := make(chan struct{})
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM)
		<-signals
		// Shutdown closes idle keep-alive connections at once, racing a client that is
		// just sending its next request on one. Busy connections first get one more
		// answer, with "Connection: close"; what is still idle a second later is idle.
		draining.Store(true)
		time.Sleep(time.Second)
		if err := server.Shutdown(context.Background()); err != nil {
			log.Print(err)
		}
		close(drained)
	}()

	notify("READY=1")
	if err := server.Serve(listener); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-drained
}

// notify sends one sd_notify message to NOTIFY_SOCKET, if there is one.
func notify(state string) {
	socket := os.Getenv("NOTIFY_SOCKET")
	if socket == "" {
		return
	}
	conn, err := net.Dial("unixgram", socket)
	if err != nil {
		log.Printf("NOTIFY_SOCKET: %v", err)
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		log.Printf("NOTIFY_SOCKET: %v", err)
	}
}
