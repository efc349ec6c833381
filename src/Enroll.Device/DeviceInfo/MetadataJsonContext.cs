using System.Text.Json.Serialization;

namespace Enroll.Device.State;

[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(long))]
[JsonSerializable(typeof(bool))]
internal sealed partial class MetadataJsonContext : JsonSerializerContext;
