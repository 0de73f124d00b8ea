"""Shared coinpulse code: settings, topic names, Kafka and Avro helpers, logging. Imported, never run."""
