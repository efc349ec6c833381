using System.Text.Json;
using System.Text.Json.Serialization;

namespace Enroll.Server.Registry;

[JsonSerializable(typeof(Dictionary<string, JsonElement>))]
[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class RegistryJsonContext : JsonSerializerContext;
