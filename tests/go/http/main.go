// Command http is the Go tableflip peer of the project's `http` example, with the same
// contract: HTTP/1.1 on $ADDR (default 127.0.0.1:8080); `GET /` answers `pid <PID>\n`;
// `GET /slow?ms=N` answers the same after N milliseconds; ready after $WARMUP_MS
// (default 0). SIGHUP upgrades, SIGTERM and SIGINT stop gracefully. It logs to stderr.
//
// For the tests of a failed upgrade, $GO_PEER_FAIL_READY makes it fail before it is ready:
// `exit` exits 3 once its listener is held, `hang` never reports ready.
//
// It follows tableflip's own http example: net/http's graceful Shutdown after Exit(). Two
// things are added. So that no accepted connection is lost, the process exits only when
// every connection the server accepted has closed (tracked with ConnState), not merely when
// Shutdown returns, since Shutdown can return while Serve hands over a connection it has
// just accepted. And Shutdown's close of the listener is unstuck (wakeBlockedAccept).
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
)

func main() {
	log.SetPrefix(fmt.Sprintf("go-http pid=%d ", os.Getpid()))
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}

	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		log.Fatalln("tableflip:", err)
	}
	defer upg.Stop()

	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		for s := range sig {
			if s != syscall.SIGHUP {
				log.Println("stopping on", s)
				upg.Stop()
				continue
			}
			log.Println("upgrade requested")
			if err := upg.Upgrade(); err != nil {
				log.Println("upgrade failed; still serving:", err)
			} else {
				log.Println("upgrade succeeded")
			}
		}
	}()

	ln, err := upg.Listen("tcp", addr)
	if err != nil {
		log.Fatalln("can't listen:", err)
	}

	switch os.Getenv("GO_PEER_FAIL_READY") {
	case "exit":
		log.Println("failing before ready: exit 3")
		os.Exit(3)
	case "hang":
		log.Println("failing before ready: never ready")
		select {}
	}

	pid := os.Getpid()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid %d\n", pid)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "pid %d\n", pid)
	})

	var conns sync.WaitGroup
	server := http.Server{
		Handler: mux,
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := server.Serve(ln); err != http.ErrServerClosed {
			log.Println("HTTP server:", err)
		}
	}()

	if ms, _ := strconv.Atoi(os.Getenv("WARMUP_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	if err := upg.Ready(); err != nil {
		log.Fatalln("ready:", err)
	}
	log.Println("ready")
	<-upg.Exit()
	log.Println("draining")

	time.AfterFunc(30*time.Second, func() {
		log.Println("graceful shutdown timed out")
		os.Exit(1)
	})
	shutdown := make(chan struct{})
	go func() {
		defer close(shutdown)
		_ = server.Shutdown(context.Background())
	}()
	// Serve returns once the listener is closed.
	wakeBlockedAccept(addr, served)
	<-shutdown
	conns.Wait()
	log.Println("exiting")
}

// wakeBlockedAccept connects to addr every 10 ms until done is closed (at most 30 s): until
// Serve has returned, its listener closed.
//
// exec.Cmd's ExtraFiles put the listening socket, shared with this process, into blocking
// mode while the child starts (golang/go#29277). An accept this process entered then blocks
// in the kernel, and Shutdown's Close of the listener waits for it: with only keep-alive
// clients, all served by the child, no connection ever comes to end it. A connection of our
// own does (the child may get some of them: they close at once, without a request).
func wakeBlockedAccept(addr string, done <-chan struct{}) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
		}
	}
}
