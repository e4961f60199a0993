// The Go producer of the conformance suite: goavro encodes, franz-go sends.
//
//	go-produce <bootstrap> <topic prefix> <schemas dir> <framing>=<readings.tsv>...
//
// framing is `single-object` (goavro's SingleFromNative: 0xC3 0x01, goavro's CRC-64-AVRO
// fingerprint, the body) or `confluent` (BinaryFromNative behind 0x00 and the 4-byte
// big-endian schema id of the catalog). Each line of a readings file is
// `schema file \t schema id \t kind \t key \t reading in Avro's JSON encoding`, as written by
// tests/producers/python/generate.py; the reading goes to <prefix><kind>, in file order.
// Prints one line per framing: how many it sent and the fingerprint of each schema it used.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if len(os.Args) < 5 {
		fail(fmt.Errorf("usage: go-produce <bootstrap> <prefix> <schemas dir> <framing>=<readings.tsv>..."))
	}
	// Idempotent by default: the file order holds within a partition, which the event times follow.
	client, err := kgo.NewClient(kgo.SeedBrokers(os.Args[1]), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		fail(err)
	}
	defer client.Close()
	prefix, schemas := os.Args[2], os.Args[3]
	codecs := map[string]*goavro.Codec{}
	for _, arg := range os.Args[4:] {
		framing, path, _ := strings.Cut(arg, "=")
		if framing != "single-object" && framing != "confluent" {
			fail(fmt.Errorf("unknown framing %s", framing))
		}
		file, err := os.Open(path)
		if err != nil {
			fail(err)
		}
		var records []*kgo.Record
		fingerprints := map[string]string{}
		lines := bufio.NewScanner(file)
		lines.Buffer(make([]byte, 1<<20), 1<<20)
		for lines.Scan() {
			col := strings.SplitN(lines.Text(), "\t", 5)
			if len(col) != 5 {
				continue
			}
			codec, ok := codecs[col[0]]
			if !ok {
				text, err := os.ReadFile(filepath.Join(schemas, col[0]))
				if err != nil {
					fail(err)
				}
				if codec, err = goavro.NewCodec(string(text)); err != nil {
					fail(fmt.Errorf("schema %s: %w", col[0], err))
				}
				codecs[col[0]] = codec
			}
			native, _, err := codec.NativeFromTextual([]byte(col[4]))
			if err != nil {
				fail(fmt.Errorf("reading %s: %w", col[3], err))
			}
			var value []byte
			if framing == "single-object" {
				value, err = codec.SingleFromNative(nil, native)
				fingerprints[col[2]] = strconv.FormatUint(codec.Rabin, 16)
			} else {
				id, perr := strconv.ParseUint(col[1], 10, 32)
				if perr != nil {
					fail(perr)
				}
				value = binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
				value, err = codec.BinaryFromNative(value, native)
			}
			if err != nil {
				fail(fmt.Errorf("reading %s: %w", col[3], err))
			}
			records = append(records, &kgo.Record{Topic: prefix + col[2], Key: []byte(col[3]), Value: value})
		}
		if err := lines.Err(); err != nil {
			fail(err)
		}
		file.Close()
		if err := client.ProduceSync(context.Background(), records...).FirstErr(); err != nil {
			fail(err)
		}
		kinds := make([]string, 0, len(fingerprints))
		for k := range fingerprints {
			kinds = append(kinds, k+"="+fingerprints[k])
		}
		sort.Strings(kinds)
		fmt.Printf("go %s: sent %d fingerprints {%s}\n", framing, len(records), strings.Join(kinds, ", "))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-produce:", err)
	os.Exit(1)
}
