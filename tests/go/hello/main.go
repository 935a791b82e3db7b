// Command hello is the Go tableflip peer of the project's `hello` example: TCP on $ADDR
// (default 127.0.0.1:8080); to every connection it writes `hello from pid <PID>\n` and
// closes it. SIGHUP upgrades, SIGTERM and SIGINT stop gracefully.
//
// After a handover it does what tableflip's own TCP example does: it returns from main
// without closing the listener, here once the greetings in flight are written. Closing it
// first can hang: exec.Cmd's ExtraFiles put the shared socket into blocking mode while the
// child starts (golang/go#29277), and an accept the old process entered meanwhile then
// blocks in the kernel until another connection arrives, while Close waits for it.
package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
)

func main() {
	log.SetPrefix(fmt.Sprintf("go-hello pid=%d ", os.Getpid()))
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
				upg.Stop()
				continue
			}
			if err := upg.Upgrade(); err != nil {
				log.Println("upgrade failed; still serving:", err)
			}
		}
	}()

	ln, err := upg.Listen("tcp", addr)
	if err != nil {
		log.Fatalln("can't listen:", err)
	}
	greeting := []byte(fmt.Sprintf("hello from pid %d\n", os.Getpid()))

	// Greetings in flight, counted under a mutex rather than with a WaitGroup: the accept
	// loop may start one while main waits for them (WaitGroup forbids an Add from zero
	// concurrent with Wait).
	var mu sync.Mutex
	idle := sync.NewCond(&mu)
	inFlight := 0
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Temporary() {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				return
			}
			mu.Lock()
			inFlight++
			mu.Unlock()
			go func() {
				_, _ = conn.Write(greeting)
				_ = conn.Close()
				mu.Lock()
				inFlight--
				idle.Broadcast()
				mu.Unlock()
			}()
		}
	}()

	if err := upg.Ready(); err != nil {
		log.Fatalln("ready:", err)
	}
	<-upg.Exit()

	time.AfterFunc(30*time.Second, func() {
		log.Println("graceful shutdown timed out")
		os.Exit(1)
	})
	mu.Lock()
	for inFlight > 0 {
		idle.Wait()
	}
	mu.Unlock()
}
