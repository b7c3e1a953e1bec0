//! The parts of TensorBoard's protobuf messages that phasetop reads and writes
//! (tensorflow/core/util/event.proto, framework/summary.proto, tensor.proto), derived by
//! hand with `prost` instead of generated from .proto files: a handful of fields do not
//! justify a protoc build step. Field numbers are those of the upstream files; fields we
//! leave out are skipped on decode, as protobuf requires. A oneof is declared as its
//! member fields (on the wire they are plain fields).

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `oneof what`: the first record of a file says `brain.Event:2`.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `Summary.Value`. Image (4), histogram (5) and audio (6) values are not decoded: a
/// value with neither `simple_value` nor `tensor` is one of those.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    #[prost(string, tag = "2")]
    pub display_name: String,
    #[prost(string, tag = "3")]
    pub summary_description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorflow.DataType` values used here.
pub const DT_FLOAT: i32 = 1;
pub const DT_DOUBLE: i32 = 2;
pub const DT_STRING: i32 = 7;

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

impl TensorProto {
    /// The value of a one-element float or double tensor (the tensor form of a scalar
    /// that TF2 and newer writers use), from `float_val`/`double_val` or the raw
    /// little-endian `tensor_content`. `None` for other dtypes or sizes.
    pub fn scalar(&self) -> Option<f64> {
        let elements = self.tensor_shape.as_ref().map_or(1, |s| s.dim.iter().map(|d| d.size).product::<i64>());
        if elements != 1 {
            return None;
        }
        match self.dtype {
            DT_FLOAT => match (self.float_val.as_slice(), self.tensor_content.as_slice()) {
                ([v], _) => Some(f64::from(*v)),
                ([], c) if c.len() == 4 => Some(f64::from(f32::from_le_bytes(c.try_into().ok()?))),
                _ => None,
            },
            DT_DOUBLE => match (self.double_val.as_slice(), self.tensor_content.as_slice()) {
                ([v], _) => Some(*v),
                ([], c) if c.len() == 8 => Some(f64::from_le_bytes(c.try_into().ok()?)),
                _ => None,
            },
            _ => None,
        }
    }

    /// A string tensor's elements, lossily as UTF-8.
    pub fn strings(&self) -> Vec<String> {
        if self.dtype != DT_STRING {
            return Vec::new();
        }
        self.string_val.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    }
}

impl Value {
    /// A scalar as TensorBoard's scalars dashboard reads it.
    pub fn scalar(tag: &str, v: f32) -> Value {
        Value { tag: tag.to_string(), simple_value: Some(v), tensor: None, metadata: None }
    }

    /// A text summary in the text plugin's tensor form (a rank-1 string tensor), which
    /// TensorBoard's text dashboard shows.
    pub fn text(tag: &str, text: &str) -> Value {
        Value {
            tag: tag.to_string(),
            simple_value: None,
            tensor: Some(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShapeProto { dim: vec![Dim { size: 1 }] }),
                string_val: vec![text.as_bytes().to_vec()],
                ..Default::default()
            }),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData { plugin_name: "text".into(), content: Vec::new() }),
                ..Default::default()
            }),
        }
    }

    /// The plugin named in this value's metadata, if any (writers often send metadata
    /// only with the first value of a tag).
    pub fn plugin(&self) -> Option<&str> {
        self.metadata.as_ref()?.plugin_data.as_ref().map(|p| p.plugin_name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn scalar_event_encodes_as_protobuf_expects() {
        let ev = Event {
            wall_time: 1.5,
            step: 3,
            file_version: None,
            summary: Some(Summary { value: vec![Value::scalar("a", 0.5)] }),
        };
        let bytes = ev.encode_to_vec();
        // wall_time (field 1, fixed64), step (field 2, varint), summary (field 5, len).
        assert_eq!(&bytes[..9], &[0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]);
        assert_eq!(&bytes[9..11], &[0x10, 3]);
        assert_eq!(bytes[11], 0x2a);
        assert_eq!(Event::decode(bytes.as_slice()).unwrap(), ev);
    }

    #[test]
    fn tensor_scalars_from_values_or_raw_content() {
        let t = |dtype, content: Vec<u8>| TensorProto { dtype, tensor_content: content, ..Default::default() };
        assert_eq!(t(DT_FLOAT, 0.25f32.to_le_bytes().to_vec()).scalar(), Some(0.25));
        assert_eq!(t(DT_DOUBLE, 0.125f64.to_le_bytes().to_vec()).scalar(), Some(0.125));
        assert_eq!(TensorProto { dtype: DT_DOUBLE, double_val: vec![2.0], ..Default::default() }.scalar(), Some(2.0));
        assert_eq!(t(DT_FLOAT, vec![0; 8]).scalar(), None);
        assert_eq!(t(DT_STRING, Vec::new()).scalar(), None);
        let two = TensorProto {
            dtype: DT_FLOAT,
            float_val: vec![1.0, 2.0],
            tensor_shape: Some(TensorShapeProto { dim: vec![Dim { size: 2 }] }),
            ..Default::default()
        };
        assert_eq!(two.scalar(), None);
    }
}
