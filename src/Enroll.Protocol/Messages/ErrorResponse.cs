using System.Text.Json.Serialization;

namespace Enroll.Protocol.Messages;

/// <summary>
/// The answer to a request that failed, whatever the request was: <c>{"request_id":...,"error":{...}}</c>. On the wire
/// it is exactly a typed response with only <c>request_id</c> and <c>error</c> set, so a client may read it as the response
/// type it expects (and find <see cref="IEnrollResponse.Error"/> set) or as this type.
/// </summary>
public sealed record ErrorResponse : IEnrollResponse
{
    /// <inheritdoc />
    [JsonPropertyOrder(0)]
    public string? RequestId { get; init; }

    /// <summary>Why the request failed.</summary>
    [JsonPropertyOrder(1)]
    public required ErrorBody Error { get; init; }
}
