namespace Enroll.Protocol.Messages;

/// <summary>What every response of protocol v1 carries besides its own fields.</summary>
public interface IEnrollResponse
{
    /// <summary>The request's <c>request_id</c>, echoed so MQTT 3.1.1 clients can match responses.</summary>
    string? RequestId { get; }

    /// <summary>Set when the request failed; the other fields are then absent.</summary>
    ErrorBody? Error { get; }
}
