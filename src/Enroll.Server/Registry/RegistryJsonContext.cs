using System.Text.Json;
using System.Text.Json.Serialization;

namespace Enroll.Server.Registry;

[JsonSerializable(typeof(Dictionary<string, JsonElement>))]
internal sealed partial class RegistryJsonContext : JsonSerializerContext;
