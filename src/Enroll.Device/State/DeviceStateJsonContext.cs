using System.Text.Json.Serialization;

namespace Enroll.Device.State;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(DeviceCredentials))]
internal sealed partial class DeviceStateJsonContext : JsonSerializerContext;
