//! One DynamoDB Streams record as Lambda delivers it inside `{"Records":[...]}`.
//!
//! ```json
//! {"eventID":"c4ca4238a0b923820dcc509a6f75849b","eventName":"INSERT","eventVersion":"1.1",
//!  "eventSource":"aws:dynamodb","awsRegion":"us-east-1",
//!  "dynamodb":{"ApproximateCreationDateTime":1764086780.0,"Keys":{"Id":{"N":"101"}},
//!              "NewImage":{"Message":{"S":"New item!"},"Id":{"N":"101"}},
//!              "SequenceNumber":"4421584500000000017450439091","SizeBytes":26,
//!              "StreamViewType":"NEW_AND_OLD_IMAGES"},
//!  "eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2015-06-27T00:48:05.899"}
//! ```

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::timestamp::EpochSeconds;

/// A DynamoDB item or key in DynamoDB JSON (`{"Id":{"N":"101"}}`), as the caller converted it
/// from the SDK: numbers stay strings, binary values are base64 strings.
pub type Item = Map<String, Value>;

/// One DynamoDB Streams record of an invocation event.
///
/// Serializes as `eventID`, `eventName`, `eventVersion` (`"1.1"`, what AWS sent in 2025), `eventSource`
/// (`"aws:dynamodb"`), `awsRegion`, `dynamodb` {`ApproximateCreationDateTime`, `Keys`, `NewImage`?,
/// `OldImage`?, `SequenceNumber`, `SizeBytes`, `StreamViewType`}, `eventSourceARN`, `userIdentity`?.
/// Absent images and identity are omitted, not `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoDbRecord {
    /// The stream record's `eventID`.
    pub event_id: String,
    /// What happened to the item.
    pub event_name: EventName,
    /// The table's region.
    pub aws_region: String,
    /// `ApproximateCreationDateTime` in epoch milliseconds; written as epoch seconds, a JSON
    /// number (`1764086780.0` for whole seconds).
    pub approximate_creation_ms: i64,
    /// The item's key attributes.
    pub keys: Item,
    /// The item after the change (view types `NEW_IMAGE`, `NEW_AND_OLD_IMAGES`; not on REMOVE).
    pub new_image: Option<Item>,
    /// The item before the change (view types `OLD_IMAGE`, `NEW_AND_OLD_IMAGES`; not on INSERT).
    pub old_image: Option<Item>,
    /// The record's sequence number; also the `itemIdentifier` of partial batch responses.
    pub sequence_number: String,
    /// `SizeBytes` of the stream record.
    pub size_bytes: u64,
    /// The stream's view type.
    pub stream_view_type: StreamViewType,
    /// The stream ARN.
    pub event_source_arn: String,
    /// Who made the change; DynamoDB sets it only for TTL deletions (see
    /// [`UserIdentity::ttl_delete`]).
    pub user_identity: Option<UserIdentity>,
}

/// `eventName` of a DynamoDB stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventName {
    /// A new item was added.
    Insert,
    /// An existing item was updated.
    Modify,
    /// An item was deleted.
    Remove,
}

/// `StreamViewType`: which images the stream records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamViewType {
    /// Only the key attributes.
    KeysOnly,
    /// The item after the change.
    NewImage,
    /// The item before the change.
    OldImage,
    /// Both images.
    NewAndOldImages,
}

/// `userIdentity` of a stream record, serialized as `{"type":..,"principalId":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// `Service` for TTL deletions.
    #[serde(rename = "type")]
    pub kind: String,
    /// `dynamodb.amazonaws.com` for TTL deletions.
    pub principal_id: String,
}

impl UserIdentity {
    /// The identity DynamoDB puts on records of items deleted by Time to Live.
    pub fn ttl_delete() -> Self {
        Self {
            kind: "Service".to_owned(),
            principal_id: "dynamodb.amazonaws.com".to_owned(),
        }
    }
}

impl Serialize for DynamoDbRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct StreamRecord<'a> {
            approximate_creation_date_time: EpochSeconds,
            keys: &'a Item,
            #[serde(skip_serializing_if = "Option::is_none")]
            new_image: Option<&'a Item>,
            #[serde(skip_serializing_if = "Option::is_none")]
            old_image: Option<&'a Item>,
            sequence_number: &'a str,
            size_bytes: u64,
            stream_view_type: StreamViewType,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            #[serde(rename = "eventID")]
            event_id: &'a str,
            event_name: EventName,
            event_version: &'static str,
            event_source: &'static str,
            aws_region: &'a str,
            dynamodb: StreamRecord<'a>,
            #[serde(rename = "eventSourceARN")]
            event_source_arn: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            user_identity: Option<&'a UserIdentity>,
        }
        Wire {
            event_id: &self.event_id,
            event_name: self.event_name,
            event_version: "1.1",
            event_source: "aws:dynamodb",
            aws_region: &self.aws_region,
            dynamodb: StreamRecord {
                approximate_creation_date_time: EpochSeconds(self.approximate_creation_ms),
                keys: &self.keys,
                new_image: self.new_image.as_ref(),
                old_image: self.old_image.as_ref(),
                sequence_number: &self.sequence_number,
                size_bytes: self.size_bytes,
                stream_view_type: self.stream_view_type,
            },
            event_source_arn: &self.event_source_arn,
            user_identity: self.user_identity.as_ref(),
        }
        .serialize(serializer)
    }
}
