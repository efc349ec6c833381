using System.Text.Json.Serialization;

namespace Enroll.Device.State;

[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class OutboxJsonContext : JsonSerializerContext;
