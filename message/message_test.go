package message

import (
	"bufio"
	"strings"
	"testing"
)

func TestHeaderFields(t *testing.T) {
	h := "Return-Path: <bounce@example.org>\r\nMessage-ID:\r\n <abc@example.org>\r\nX-Pm-Internal-Id: pm1==\r\nbroken line without colon\r\nSubject: x\r\n\r\nMessage-ID: <body@example.org>\r\n"
	mid, pm, sender := HeaderFields(bufio.NewReader(strings.NewReader(h)))
	if mid != "abc@example.org" || pm != "pm1==" || sender != "bounce@example.org" {
		t.Fatalf("got %q %q %q", mid, pm, sender)
	}
	// LF only, no Return-Path, no blank line at the end
	mid, _, sender = HeaderFields(bufio.NewReader(strings.NewReader("Message-Id: <x@y>\nFrom: a@b")))
	if mid != "x@y" || sender != "" {
		t.Fatalf("got %q %q", mid, sender)
	}
}

func TestHeaderSnifferStopsAtBody(t *testing.T) {
	var s HeaderSniffer
	s.Write([]byte("Message-ID: <a@b>\r\nSubj"))
	s.Write([]byte("ect: x\r\n\r\nMessage-ID: <body@b>\r\n"))
	s.Write([]byte(strings.Repeat("x", 1<<20)))
	if s.buf.Len() > MaxHeader {
		t.Fatalf("kept %d bytes", s.buf.Len())
	}
	if mid, _, _ := s.Fields(); mid != "a@b" {
		t.Fatalf("got %q", mid)
	}
}

func TestDecryptScannerAcrossWrites(t *testing.T) {
	marker := "Comment: This message could not be decrypted: gopenpgp"
	for split := 1; split < len(marker); split += 7 {
		var d DecryptScanner
		d.Write([]byte("-----BEGIN PGP MESSAGE-----\r\n" + marker[:split]))
		d.Write([]byte(marker[split:] + "\r\n"))
		if !d.Found {
			t.Fatalf("marker split at %d not found", split)
		}
	}
	var d DecryptScanner
	d.Write([]byte("an ordinary message that could be decrypted\r\n"))
	if d.Found {
		t.Fatal("false positive")
	}
}

func TestContentKey(t *testing.T) {
	a := Meta{MessageID: "x@y", Size: 10, SHA256: "aa"}
	b := Meta{MessageID: "x@y", Size: 10, SHA256: "bb"}
	if a.ContentKey() == b.ContentKey() {
		t.Fatal("different bytes, same key")
	}
	p := Meta{PMInternalID: "pm1", SHA256: "aa"}
	q := Meta{PMInternalID: "pm1", SHA256: "bb"}
	if p.ContentKey() != q.ContentKey() {
		t.Fatal("the Proton ID is the key on Bridge, whatever the bytes")
	}
}
