// Command multi is a Go tableflip service with one listener or socket of every kind and a
// file, to be upgraded into a Rust service that takes over only some of them:
//
//   - tcp on $TCP_ADDR and on $TCP2_ADDR: writes `hello from pid <PID>\n` and closes;
//   - udp on $UDP_ADDR and unixgram on $UNIXGRAM_PATH: echoes every datagram prefixed
//     with `<PID> `;
//   - unix on $UNIX_PATH: like tcp;
//   - the file `state` (AddFile): $STATE_PATH, opened read-only.
//
// SIGHUP upgrades; after a handover it closes everything and exits.
package main

import (
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudflare/tableflip"
)

func main() {
	log.SetPrefix(fmt.Sprintf("go-multi pid=%d ", os.Getpid()))
	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		log.Fatalln("tableflip:", err)
	}
	defer upg.Stop()

	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM)
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

	greeting := []byte(fmt.Sprintf("hello from pid %d\n", os.Getpid()))
	for _, l := range [][2]string{
		{"tcp", os.Getenv("TCP_ADDR")},
		{"tcp", os.Getenv("TCP2_ADDR")},
		{"unix", os.Getenv("UNIX_PATH")},
	} {
		ln, err := upg.Listen(l[0], l[1])
		if err != nil {
			log.Fatalln("can't listen:", err)
		}
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = conn.Write(greeting)
				_ = conn.Close()
			}
		}()
	}
	prefix := []byte(fmt.Sprintf("%d ", os.Getpid()))
	for _, p := range [][2]string{
		{"udp", os.Getenv("UDP_ADDR")},
		{"unixgram", os.Getenv("UNIXGRAM_PATH")},
	} {
		conn, err := upg.ListenPacket(p[0], p[1])
		if err != nil {
			log.Fatalln("can't listen:", err)
		}
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := conn.ReadFrom(buf)
				if err != nil {
					return
				}
				if from != nil {
					_, _ = conn.WriteTo(append(append([]byte{}, prefix...), buf[:n]...), from)
				}
			}
		}()
	}
	state, err := os.Open(os.Getenv("STATE_PATH"))
	if err != nil {
		log.Fatalln("can't open the state file:", err)
	}
	if err := upg.AddFile("state", state); err != nil {
		log.Fatalln("AddFile:", err)
	}
	_ = state.Close()

	if err := upg.Ready(); err != nil {
		log.Fatalln("ready:", err)
	}
	log.Println("ready")
	<-upg.Exit()
	log.Println("upgraded; exiting")
}
