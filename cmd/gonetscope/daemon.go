package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gonetscope/gonetscope/pkg/control"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

// daemon runs until SIGTERM with one set of loaded BPF programs, and
// attaches to and detaches from PIDs on request over the control socket.
func daemon(args []string) error {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	var tf tracingFlags
	tf.register(fs, "127.0.0.1:9464")
	socket := fs.String("socket", control.DefaultSocket, "control socket (mode 0600, root only)")
	if err := parseFlags(fs, args, "gonetscope daemon [flags]"); err != nil {
		return err
	}
	if err := tf.check(); err != nil {
		return err
	}
	restoreGC := goruntime.TightGC() // as trace's start-up
	sink, file, tr, closeAll, err := tf.open()
	restoreGC()
	if err != nil {
		return err
	}
	defer closeAll()
	srv, err := control.Listen(*socket, daemonHandler{tr})
	if err != nil {
		return err
	}
	defer srv.Close()
	stopMetrics, err := tf.serveMetrics(tr)
	if err != nil {
		return err
	}
	defer stopMetrics()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if file != nil {
				if err := file.Reopen(); err != nil {
					fmt.Fprintln(os.Stderr, "gonetscope:", err)
				}
			}
		}
	}()
	served := make(chan struct{})
	go func() { srv.Serve(ctx); close(served) }()
	limitProcs(tf.procs)
	err = tr.Run(ctx, sink, tracer.RunOptions{})
	stop()
	<-served
	return err
}

type daemonHandler struct{ tr *tracer.Tracer }

func (h daemonHandler) Attach(pid int) (control.Target, error) {
	ev, err := h.tr.Attach(pid)
	if err != nil {
		return control.Target{}, err
	}
	return control.Target{PID: pid, Comm: ev.Comm, Exe: ev.Exe, GoVersion: ev.GoVersion, Since: ev.Time}, nil
}

func (h daemonHandler) Detach(pid int) error { return h.tr.Detach(pid, event.ReasonRequested) }

func (h daemonHandler) List() []control.Target {
	var list []control.Target
	for _, t := range h.tr.Targets() {
		list = append(list, control.Target{PID: t.PID, Comm: t.Comm, Exe: t.Exe, GoVersion: t.GoVersion, Since: t.Since})
	}
	return list
}

// client runs attach, detach and list against a daemon.
func client(op string, args []string) error {
	fs := flag.NewFlagSet(op, flag.ContinueOnError)
	socket := fs.String("socket", control.DefaultSocket, "the daemon's control socket")
	usage := "gonetscope " + op + " [--socket PATH] PID"
	if op == "list" {
		usage = "gonetscope list [--socket PATH]"
	}
	if err := parseFlags(fs, args, usage); err != nil {
		return err
	}
	req := control.Request{Op: op}
	if op != "list" {
		if fs.NArg() != 1 {
			return fmt.Errorf("%s needs one PID: %s", op, usage)
		}
		pid, err := strconv.Atoi(fs.Arg(0))
		if err != nil || pid <= 0 {
			return fmt.Errorf("%q is not a PID", fs.Arg(0))
		}
		req.PID = pid
	} else if fs.NArg() != 0 {
		return fmt.Errorf("list takes no arguments: %s", usage)
	}
	rep, err := control.Call(*socket, req)
	if err != nil {
		return err
	}
	switch op {
	case "attach":
		fmt.Printf("attached to %d (%s, %s)\n", rep.Target.PID, rep.Target.Comm, rep.Target.GoVersion)
	case "detach":
		fmt.Printf("detached from %d\n", req.PID)
	case "list":
		for _, t := range rep.Targets {
			fmt.Printf("%d\t%s\t%s\t%s\tsince %s\n", t.PID, t.Comm, t.GoVersion, t.Exe, t.Since.Format(time.RFC3339))
		}
	}
	return nil
}

// parseFlags parses a subcommand's flags; errors are reported once, by main.
func parseFlags(fs *flag.FlagSet, args []string, usage string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fmt.Println("Usage:", usage)
		fs.PrintDefaults()
		return errHelp
	}
	return err
}

// errHelp ends a command that printed its help: exit status 0.
var errHelp = errors.New("help")
