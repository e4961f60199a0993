//! Producing with back-pressure: a full local queue waits for room instead of failing.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

/// Enqueues a record and returns its delivery future, waiting while the producer's queue is
/// full (its own thread drains it); any other error is returned, for [`crate::classify`].
pub fn send<P: ToBytes + ?Sized>(
    producer: &FutureProducer,
    mut rec: FutureRecord<'_, [u8], P>,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(rec) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits for a delivery: the partition and offset the broker gave the record, or why not.
pub async fn delivered(delivery: DeliveryFuture) -> Result<(i32, i64), KafkaError> {
    match delivery.await {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}
