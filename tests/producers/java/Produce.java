// The Java producer of the conformance suite: Apache Avro encodes, the Apache Kafka client sends.
//
//   java -cp '<lib>/*' Produce.java <bootstrap> <topic prefix> <schemas dir> <framing>=<readings.tsv>...
//
// framing is `single-object` (org.apache.avro.message.BinaryMessageEncoder: 0xC3 0x01, the
// CRC-64-AVRO fingerprint Avro computes, the body) or `confluent` (GenericDatumWriter behind
// 0x00 and the 4-byte big-endian schema id of the catalog). Each line of a readings file is
// `schema file \t schema id \t kind \t key \t reading in Avro's JSON encoding`, as written by
// tests/producers/python/generate.py; the reading goes to <prefix><kind>, in file order.
// Prints one line per framing: how many it sent and the fingerprint of each schema it used.

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Produce {
    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: Produce <bootstrap> <prefix> <schemas dir> <framing>=<readings.tsv>...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        // Idempotence keeps the file order within a partition, which the event times follow.
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        String prefix = args[1];
        Path schemas = Path.of(args[2]);
        Map<String, Schema> parsed = new TreeMap<>();
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int a = 3; a < args.length; a++) {
                String[] spec = args[a].split("=", 2);
                String framing = spec[0];
                if (!framing.equals("single-object") && !framing.equals("confluent")) {
                    throw new IllegalArgumentException("unknown framing " + framing);
                }
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                Map<String, String> fingerprints = new TreeMap<>();
                for (String line : Files.readAllLines(Path.of(spec[1]), StandardCharsets.UTF_8)) {
                    if (line.isEmpty()) {
                        continue;
                    }
                    String[] col = line.split("\t", 5);
                    String file = col[0];
                    int id = Integer.parseInt(col[1]);
                    Schema schema = parsed.computeIfAbsent(file, f -> {
                        try {
                            return new Schema.Parser().parse(schemas.resolve(f).toFile());
                        } catch (Exception e) {
                            throw new RuntimeException("schema " + f, e);
                        }
                    });
                    GenericRecord reading = new GenericDatumReader<GenericRecord>(schema)
                            .read(null, DecoderFactory.get().jsonDecoder(schema, col[4]));
                    byte[] value;
                    if (framing.equals("single-object")) {
                        ByteBuffer b = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(reading);
                        value = new byte[b.remaining()];
                        b.get(value);
                        fingerprints.put(col[2], Long.toUnsignedString(SchemaNormalization.parsingFingerprint64(schema), 16));
                    } else {
                        ByteArrayOutputStream out = new ByteArrayOutputStream();
                        out.write(0);
                        out.write(ByteBuffer.allocate(4).putInt(id).array());
                        BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
                        new GenericDatumWriter<GenericRecord>(schema).write(reading, enc);
                        enc.flush();
                        value = out.toByteArray();
                    }
                    byte[] key = col[3].getBytes(StandardCharsets.UTF_8);
                    sent.add(producer.send(new ProducerRecord<>(prefix + col[2], key, value)));
                }
                for (Future<RecordMetadata> f : sent) {
                    f.get();
                }
                System.out.println("java " + framing + ": sent " + sent.size() + " fingerprints " + fingerprints);
            }
        }
    }
}
