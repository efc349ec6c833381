using System.Reflection;
using System.Text;
using System.Text.Json;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;

namespace Enroll.Protocol.Tests.Messages;

public sealed class ErrorResponseTests
{
    private static readonly ErrorBody RateLimited = new(ErrorCodes.RateLimited, "too many failed attempts from this address; wait before trying again") { RetryAfterSeconds = 7 };

    public static TheoryData<string> RequestTopics => [.. EnrollRequests.All.Select(r => r.TopicFor("dev_1"))];

    [Fact]
    public void ErrorResponse_WithoutRequestId_IsTheBytesOfTodaysBrokerAnswer()
    {
        // What the broker answered before ErrorResponse existed: a RegistrationResponse with only the error set.
        var before = JsonSerializer.SerializeToUtf8Bytes(new RegistrationResponse { Error = RateLimited }, EnrollJsonContext.Default.RegistrationResponse);
        var now = EnrollJson.Serialize(new ErrorResponse { Error = RateLimited }, EnrollJsonContext.Default.ErrorResponse);

        Assert.Equal(
            """{"error":{"code":"rate_limited","message":"too many failed attempts from this address; wait before trying again","retry_after_seconds":7}}""",
            Encoding.UTF8.GetString(now));
        Assert.Equal(before, now);
    }

    [Fact]
    public void ErrorResponse_WithRequestId_IsTheBytesOfATypedErrorAnswer_AndOmitsAbsentFields()
    {
        var error = new ErrorBody(ErrorCodes.Forbidden, "no");
        var before = JsonSerializer.SerializeToUtf8Bytes(new ProvisioningInitResponse { Error = error, RequestId = "r-1" }, EnrollJsonContext.Default.ProvisioningInitResponse);
        var now = EnrollJson.Serialize(new ErrorResponse { Error = error, RequestId = "r-1" }, EnrollJsonContext.Default.ErrorResponse);

        Assert.Equal("""{"request_id":"r-1","error":{"code":"forbidden","message":"no"}}""", Encoding.UTF8.GetString(now));
        Assert.Equal(before, now);
    }

    [Fact]
    public void ErrorResponse_RoundTrips()
    {
        var original = new ErrorResponse { Error = RateLimited, RequestId = "r-2" };
        var bytes = EnrollJson.Serialize(original, EnrollJsonContext.Default.ErrorResponse);

        Assert.True(EnrollJson.TryDeserialize<ErrorResponse>(bytes, EnrollJsonContext.Default.ErrorResponse, out var read, out var why), why);
        Assert.Equal(original, read);
    }

    [Fact]
    public void ASuccessAnswer_IsNotAnErrorResponse()
    {
        var success = EnrollJson.Serialize(new RegistrationResponse { DeviceId = "dev_1", RequestId = "r" }, EnrollJsonContext.Default.RegistrationResponse);

        Assert.False(EnrollJson.TryDeserialize<ErrorResponse>(success, EnrollJsonContext.Default.ErrorResponse, out _, out _));
    }

    [Theory]
    [MemberData(nameof(RequestTopics))]
    public void ErrorResponse_ReadsAsEveryDeclaredResponseType_AndWritesBackTheSameBytes(string topic)
    {
        Assert.True(EnrollRequests.TryFind(topic, out var request));
        var bytes = EnrollJson.Serialize(new ErrorResponse { Error = RateLimited, RequestId = "r-3" }, EnrollJsonContext.Default.ErrorResponse);

        // Through the declaration's own types, whatever they are: a new request type is covered without editing this test.
        var readAs = typeof(ErrorResponseTests).GetMethod(nameof(ReadAs), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(request.GetType().GetGenericArguments());
        var (error, again) = ((ErrorBody?, byte[]))readAs.Invoke(null, [request, bytes])!;

        Assert.Equal(RateLimited, error);
        Assert.Equal(bytes, again);
    }

    private static (ErrorBody? Error, byte[] Again) ReadAs<TRequest, TResponse>(EnrollRequest<TRequest, TResponse> request, byte[] bytes)
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse
    {
        Assert.True(EnrollJson.TryDeserialize<TResponse>(bytes, request.ResponseType, out var typed, out var why), why);
        Assert.Equal("r-3", typed.RequestId);
        return (typed.Error, EnrollJson.Serialize(typed, request.ResponseType));
    }
}
