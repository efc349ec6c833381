using System.Text.Json.Serialization;
using Enroll.Protocol.Messages;

namespace Enroll.Protocol.Json;

/// <summary>
/// Source-generated JSON metadata for every wire message: snake_case names, nulls omitted, nesting limited.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    MaxDepth = EnrollJson.MaxDepth,
    AllowTrailingCommas = false,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Disallow)]
[JsonSerializable(typeof(RegistrationRequest))]
[JsonSerializable(typeof(RegistrationResponse))]
[JsonSerializable(typeof(ProvisioningInitRequest))]
[JsonSerializable(typeof(ProvisioningInitResponse))]
[JsonSerializable(typeof(ProvisioningCompleteRequest))]
[JsonSerializable(typeof(ProvisioningCompleteResponse))]
[JsonSerializable(typeof(TokenRefreshRequest))]
[JsonSerializable(typeof(TokenRefreshResponse))]
[JsonSerializable(typeof(TwinGetRequest))]
[JsonSerializable(typeof(TwinGetResponse))]
[JsonSerializable(typeof(TwinDesiredPatch))]
[JsonSerializable(typeof(TwinReportRequest))]
[JsonSerializable(typeof(TwinReportResponse))]
[JsonSerializable(typeof(DeviceCommand))]
[JsonSerializable(typeof(CommandsPendingRequest))]
[JsonSerializable(typeof(CommandsPendingResponse))]
[JsonSerializable(typeof(CommandResultRequest))]
[JsonSerializable(typeof(CommandResultResponse))]
[JsonSerializable(typeof(TransferStatusRequest))]
[JsonSerializable(typeof(TransferStatusResponse))]
[JsonSerializable(typeof(DeviceStatusRequest))]
[JsonSerializable(typeof(DeviceStatusResponse))]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(ServerKeySet))]
public sealed partial class EnrollJsonContext : JsonSerializerContext;
