using Enroll.Device.Tests.Fakes;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;

namespace Enroll.Device.Tests.Registration;

public sealed class RegistrationServiceTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Register_WhenServerSilent_RetriesWithBackoffThenTimesOut()
    {
        var device = new DeviceUnderTest(o => o.MaxAttempts = 4);
        var start = device.Service.StartAsync();
        var delays = new List<TimeSpan>();

        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.Registering && s.Attempt == 1, Patience);
        for (var attempt = 1; attempt <= 4; attempt++)
        {
            device.Time.Advance(device.Options.AttemptTimeout);
            if (attempt < 4)
            {
                var waiting = await device.Service.WaitForStatusAsync(s => s.State == DeviceState.WaitingToRetry, Patience);
                delays.Add(waiting.RetryIn!.Value);
                var next = attempt + 1;
                await device.Time.AdvanceUntilAsync(waiting.RetryIn.Value, device.Service.WaitForStatusAsync(s => s.State == DeviceState.Registering && s.Attempt == next, Patience));
            }
        }

        var error = await Assert.ThrowsAsync<EnrollTimeoutException>(() => start.WaitAsync(Patience));
        Assert.Equal(4, error.Attempts);
        Assert.Equal([TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4)], delays);
        Assert.Equal(4, device.Broker.PublishCount(EnrollTopics.Register));
        Assert.Equal(DeviceState.Failed, device.Service.Status.State);
    }

    [Theory]
    [InlineData(ErrorCodes.Unauthorized)]
    [InlineData(ErrorCodes.Forbidden)]
    [InlineData(ErrorCodes.InvalidRequest)]
    [InlineData(ErrorCodes.Rejected)]
    public async Task Register_WhenServerAnswersAPermanentError_StopsAtOnceWithATypedException(string code)
    {
        var device = new DeviceUnderTest(o => o.ProvisioningToken = null);
        device.Broker.Responder = request => Answers.Error(request, code);

        var error = await Assert.ThrowsAsync<EnrollServerException>(() => device.Service.StartAsync().WaitAsync(Patience));

        Assert.Equal(code, error.Code);
        Assert.True(error.IsPermanent);
        Assert.Equal(1, device.Broker.PublishCount(EnrollTopics.Register));
    }

    [Fact]
    public async Task Register_WhenServerSaysRetryAfter_WaitsExactlyThatLongThenSucceeds()
    {
        var device = new DeviceUnderTest();
        var calls = 0;
        device.Broker.Responder = request => Interlocked.Increment(ref calls) == 1
            ? Answers.Error(request, ErrorCodes.RateLimited, retryAfterSeconds: 30)
            : Answers.Registered(request, "dev_1", device.Time.GetUtcNow());
        var start = device.Service.StartAsync();

        var waiting = await device.Service.WaitForStatusAsync(s => s.State == DeviceState.WaitingToRetry, Patience);
        Assert.Equal(TimeSpan.FromSeconds(30), waiting.RetryIn);

        await device.Time.AdvanceUntilAsync(TimeSpan.FromSeconds(30), () => device.Broker.PublishCount(EnrollTopics.Register) == 2);
        Assert.Equal("dev_1", (await start.WaitAsync(Patience)).DeviceId);
        Assert.Equal(2, device.Broker.PublishCount(EnrollTopics.Register));
    }

    [Fact]
    public async Task Start_WhileRunning_ReturnsTheSameRegistration()
    {
        var device = new DeviceUnderTest();
        var first = device.Service.StartAsync();
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.Registering, Patience);
        var second = device.Service.StartAsync();
        device.Broker.Responder = request => Answers.Registered(request, "dev_same", device.Time.GetUtcNow());
        device.Time.Advance(device.Options.AttemptTimeout);
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.WaitingToRetry, Patience);

        var identities = await device.Time.AdvanceUntilAsync(TimeSpan.FromSeconds(1), Task.WhenAll(first, second));

        Assert.Equal(identities[0], identities[1]);
        Assert.Equal(2, device.Broker.PublishCount(EnrollTopics.Register));
        Assert.Equal(1, device.Store.Saves);
    }

    [Fact]
    public async Task Stop_DuringRetries_CancelsThemUnsubscribesAndResets_ThenStartWorksAgain()
    {
        var device = new DeviceUnderTest();
        var start = device.Service.StartAsync();
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.Registering, Patience);
        device.Time.Advance(device.Options.AttemptTimeout);
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.WaitingToRetry, Patience);

        await device.Service.StopAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => start.WaitAsync(Patience));
        Assert.Equal(DeviceState.Stopped, device.Service.Status.State);
        Assert.False(device.Service.IsRunning);
        Assert.Contains($"unsubscribe:{EnrollTopics.ClientResponses("unit-1")}", device.Broker.Operations);
        device.Time.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal(1, device.Broker.PublishCount(EnrollTopics.Register));

        device.Broker.Responder = request => Answers.Registered(request, "dev_again", device.Time.GetUtcNow());
        Assert.Equal("dev_again", (await device.Service.StartAsync().WaitAsync(Patience)).DeviceId);
    }

    [Fact]
    public async Task Stop_WhenNotRunning_IsAnError()
    {
        var device = new DeviceUnderTest();

        await Assert.ThrowsAsync<InvalidOperationException>(() => device.Service.StopAsync());
    }

    [Fact]
    public async Task Start_WithAStoredValidAccessToken_SkipsRegistrationEntirely()
    {
        var device = new DeviceUnderTest();
        var now = device.Time.GetUtcNow();
        device.Store.Stored = new DeviceCredentials
        {
            ClientId = "unit-1",
            DeviceId = "dev_stored",
            AccessToken = Answers.Jwt("dev_stored", TokenTypes.Access, now, TimeSpan.FromHours(24)),
            AccessTokenExpiresAt = now + TimeSpan.FromHours(24),
        };

        var identity = await device.Service.StartAsync().WaitAsync(Patience);

        Assert.True(identity.RegistrationSkipped);
        Assert.Equal("dev_stored", identity.DeviceId);
        Assert.Empty(device.Broker.Operations);
    }

    [Fact]
    public async Task Start_WithAnExpiredStoredToken_ReRegistersWithItsStoredDeviceId()
    {
        var device = new DeviceUnderTest();
        var now = device.Time.GetUtcNow();
        device.Store.Stored = new DeviceCredentials
        {
            ClientId = "unit-1",
            DeviceId = "dev_stored",
            ProvisioningToken = "ept_test.secret",
            AccessToken = Answers.Jwt("dev_stored", TokenTypes.Access, now - TimeSpan.FromDays(2), TimeSpan.FromHours(24)),
            AccessTokenExpiresAt = now - TimeSpan.FromDays(1),
        };
        device.Broker.Responder = request => Answers.Registered(request, "dev_stored", device.Time.GetUtcNow());

        var identity = await device.Service.StartAsync().WaitAsync(Patience);

        Assert.False(identity.RegistrationSkipped);
        Assert.Equal("dev_stored", identity.DeviceId);
        var request = System.Text.Encoding.UTF8.GetString(device.Broker.Published.Single().Payload.Span);
        Assert.Contains("\"device_id\":\"dev_stored\"", request, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Register_SubscribesToTheResponseTopicBeforePublishing()
    {
        var device = new DeviceUnderTest();
        device.Broker.Responder = request => Answers.Registered(request, "dev_1", device.Time.GetUtcNow());

        await device.Service.StartAsync().WaitAsync(Patience);

        var operations = device.Broker.Operations.ToList();
        var subscribe = operations.IndexOf($"subscribe:{EnrollTopics.ClientResponses("unit-1")}");
        var publish = operations.IndexOf($"publish:{EnrollTopics.Register}");
        Assert.True(subscribe >= 0 && subscribe < publish, string.Join(", ", operations));
    }

    [Fact]
    public async Task Register_WhenAnswerArrivesForAnEarlierTimedOutAttempt_TakesIt()
    {
        var device = new DeviceUnderTest();
        Connection.OutgoingMessage? firstAttempt = null;
        device.Broker.Responder = request =>
        {
            firstAttempt ??= request;
            return null;
        };
        var start = device.Service.StartAsync();
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.Registering && s.Attempt == 1, Patience);
        device.Time.Advance(device.Options.AttemptTimeout);
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.WaitingToRetry, Patience);
        await device.Time.AdvanceUntilAsync(TimeSpan.FromSeconds(1), device.Service.WaitForStatusAsync(s => s.State == DeviceState.Registering && s.Attempt == 2, Patience));

        // The server's answer to attempt 1 arrives late, during attempt 2.
        device.Broker.Responder = null;
        await device.Broker.DeliverAsync(firstAttempt!, Answers.Registered(firstAttempt!, "dev_late", device.Time.GetUtcNow()));

        Assert.Equal("dev_late", (await start.WaitAsync(Patience)).DeviceId);
    }
}
