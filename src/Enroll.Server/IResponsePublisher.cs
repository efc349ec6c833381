namespace Enroll.Server;

/// <summary>
/// Sends messages to clients through whichever broker the server uses (embedded or external): request answers, and
/// pushes such as a provisioning decision. A server-wide port, so the domain can push without knowing the transport.
/// </summary>
internal interface IResponsePublisher
{
    Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json");
}
