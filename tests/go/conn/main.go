// Command conn is the Go tableflip peer of the project's `line_session` example: a
// line-based TCP echo on $ADDR (default 127.0.0.1:8080) that answers every line L with
// `pid <PID> L` and hands its open sessions to the next process with Fds.AddConn, keyed
// ("tcp", the peer's address). SIGHUP upgrades, SIGTERM and SIGINT stop gracefully.
//
// A successor claims, with Fds.Conn before Ready, the sessions listed in $SESSIONS_FILE
// (one "network address" per line: Go's API cannot list inherited connections, so the test
// writes the keys there), and reads them only once its parent has exited (WaitForParent):
// until then the parent may still be reading them.
//
// At the handover (Exit) every session stops reading: a read deadline in the past
// interrupts the read it is blocked in. Sessions read one byte at a time so that nothing
// beyond the line being answered leaves the kernel's socket buffer; a partial line already
// read is lost (Go tableflip has no way to hand it over), which the test avoids by asking
// one line at a time.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
)

type sessions struct {
	mu      sync.Mutex
	open    map[net.Conn]bool
	idle    *sync.Cond
	running int
	exiting bool
}

func main() {
	log.SetPrefix(fmt.Sprintf("go-conn pid=%d ", os.Getpid()))
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

	s := &sessions{open: make(map[net.Conn]bool)}
	s.idle = sync.NewCond(&s.mu)

	var inherited []net.Conn
	if path := os.Getenv("SESSIONS_FILE"); upg.HasParent() && path != "" {
		inherited = claim(upg, path)
	}

	if err := upg.Ready(); err != nil {
		log.Fatalln("ready:", err)
	}

	for _, c := range inherited {
		s.start(c, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := upg.WaitForParent(ctx); err != nil {
				log.Println("waiting for the parent:", err)
			}
			log.Println("session resumed", c.RemoteAddr())
		})
	}

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
			if err := upg.AddConn("tcp", conn.RemoteAddr().String(), conn.(tableflip.Conn)); err != nil {
				log.Println("can't record the session:", err)
			}
			s.start(conn, func() {})
		}
	}()

	<-upg.Exit()

	time.AfterFunc(30*time.Second, func() {
		log.Println("graceful shutdown timed out")
		os.Exit(1)
	})
	// Stop reading every session: the successor has them (after a stop they are closed).
	s.mu.Lock()
	s.exiting = true
	for c := range s.open {
		_ = c.SetReadDeadline(time.Now())
	}
	for s.running > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// claim takes the inherited connections listed in the file at path.
func claim(upg *tableflip.Upgrader, path string) []net.Conn {
	f, err := os.Open(path)
	if err != nil {
		log.Println("no sessions file:", err)
		return nil
	}
	defer f.Close()
	var conns []net.Conn
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) != 2 {
			continue
		}
		c, err := upg.Conn(fields[0], fields[1])
		if err != nil {
			log.Println("can't take over a session:", err)
			continue
		}
		if c != nil {
			conns = append(conns, c)
		}
	}
	return conns
}

// start serves c in a goroutine, after first().
func (s *sessions) start(c net.Conn, first func()) {
	s.mu.Lock()
	if s.exiting {
		s.mu.Unlock()
		return
	}
	s.open[c] = true
	s.running++
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.open, c)
			s.running--
			s.idle.Broadcast()
			s.mu.Unlock()
		}()
		first()
		serve(c)
	}()
}

// serve answers every line on c until the client closes or a read deadline stops it.
func serve(c net.Conn) {
	pid := os.Getpid()
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := c.Read(b)
		if n == 1 {
			line = append(line, b[0])
			if b[0] == '\n' {
				if _, err := fmt.Fprintf(c, "pid %d %s", pid, line); err != nil {
					_ = c.Close()
					return
				}
				line = line[:0]
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Handed over: leave the connection to the successor.
			return
		}
		if err != nil {
			_ = c.Close()
			return
		}
	}
}
