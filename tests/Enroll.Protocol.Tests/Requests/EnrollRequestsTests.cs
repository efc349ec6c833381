using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;

namespace Enroll.Protocol.Tests.Requests;

public sealed class EnrollRequestsTests
{
    public static TheoryData<string> NotRequestTopics => new()
    {
        EnrollTopics.ServerKeys,
        EnrollTopics.Root,
        "enroll/v1/register/",
        "enroll/v1/register/extra",
        "enroll/v1/Register",
        "enroll/v2/register",
        "/enroll/v1/register",
        "enroll/v1/provisioning",
        "enroll/v1/tokens/#",
        "enroll/v1/+/init",
        EnrollTopics.ClientResponses("c1"),
        EnrollTopics.DeviceResponses("d1"),
        EnrollTopics.DeviceMessages("d1", "telemetry"),
        EnrollTopics.DeviceTwinDesired("d1"),
        EnrollTopics.DeviceCommands("d1"),
        "enroll/v1/devices/+/twin/get",
        "enroll/v1/devices/{device_id}/twin/get",
        "enroll/v1/devices//twin/get",
        "enroll/v1/devices/d1/twin/get/",
        "enroll/v1/devices/d1/twin",
        "enroll/v1/devices/d1/x/twin/get",
        "enroll/v1/devices/d 1/twin/get",
        string.Empty,
    };

    [Fact]
    public void Table_HasTheFourOpenRequestsOfProtocolV1_InOrder_ThenTheDeviceScopedOnes()
    {
        Assert.Equal(
            [EnrollTopics.Register, EnrollTopics.ProvisioningInit, EnrollTopics.ProvisioningComplete, EnrollTopics.TokensRefresh],
            EnrollRequests.Open.Select(r => r.Topic));
        Assert.Equal(["registration", "provisioning_init", "provisioning_complete", "token_refresh"], EnrollRequests.Open.Select(r => r.Name));
        Assert.Equal(EnrollRequests.Open.Concat(EnrollRequests.DeviceScoped), EnrollRequests.All);
        Assert.All(EnrollRequests.DeviceScoped, r => Assert.StartsWith("enroll/v1/devices/{device_id}/", r.Topic, StringComparison.Ordinal));
        Assert.Contains(EnrollRequests.TwinGet, EnrollRequests.DeviceScoped);
        Assert.Contains(EnrollRequests.TwinReport, EnrollRequests.DeviceScoped);
    }

    [Fact]
    public void DeviceScopedRequest_TopicNamesTheDevice_AndTryFindReadsItBack()
    {
        Assert.Equal("enroll/v1/devices/dev_1/twin/get", EnrollRequests.TwinGet.TopicFor("dev_1"));
        Assert.Equal("enroll/v1/devices/+/twin/get", EnrollRequests.TwinGet.Filter);
        Assert.True(EnrollRequests.TryFind("enroll/v1/devices/dev_1/twin/report", out var found, out var deviceId));
        Assert.Same(EnrollRequests.TwinReport, found);
        Assert.Equal("dev_1", deviceId);
        Assert.True(EnrollTopics.IsRequestTopic("enroll/v1/devices/dev_1/twin/get"));
        Assert.False(EnrollTopics.IsOpenRequestTopic("enroll/v1/devices/dev_1/twin/get"));
        Assert.True(EnrollTopics.IsOpenRequestTopic(EnrollTopics.Register));
        Assert.Throws<ArgumentException>(() => EnrollRequests.TwinGet.TopicFor("bad/id"));
        Assert.Throws<ArgumentException>(() => EnrollRequests.TwinGet.TopicFor(null));
        Assert.Equal(EnrollTopics.Register, EnrollRequests.Register.TopicFor(null));
        Assert.True(EnrollRequests.TryFind(EnrollTopics.Register, out _, out var none));
        Assert.Null(none);
    }

    [Fact]
    public void Table_TopicsAndNamesAreUnique_AndEveryTopicLiesUnderTheProtocolRoot()
    {
        Assert.Equal(EnrollRequests.All.Count, EnrollRequests.All.Select(r => r.Topic).Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(EnrollRequests.All.Count, EnrollRequests.All.Select(r => r.Name).Distinct(StringComparer.Ordinal).Count());
        Assert.All(EnrollRequests.All, r =>
        {
            Assert.StartsWith(EnrollTopics.Root, r.Topic, StringComparison.Ordinal);
            Assert.Equal(r.IsDeviceScoped, r.Topic.Contains(EnrollRequest.DeviceIdPlaceholder, StringComparison.Ordinal));
            Assert.DoesNotContain('+', r.Topic);
            Assert.DoesNotContain('#', r.Topic);
            Assert.False(r.Topic.EndsWith('/'), r.Topic);
        });
    }

    [Fact]
    public void RequestFilters_AreTheTablesTopics_WithAWildcardForTheDevice()
    {
        Assert.Equal(EnrollRequests.All.Select(r => r.Topic.Replace("{device_id}", "+", StringComparison.Ordinal)), EnrollTopics.RequestFilters);
    }

    [Fact]
    public void IsRequestTopic_IsTrueForEveryTopicOfTheTable()
    {
        Assert.All(EnrollRequests.All, r =>
        {
            Assert.True(EnrollTopics.IsRequestTopic(r.TopicFor("dev_1")), r.Topic);
            Assert.True(EnrollRequests.TryFind(r.TopicFor("dev_1"), out var found));
            Assert.Same(r, found);
        });
    }

    [Theory]
    [MemberData(nameof(NotRequestTopics))]
    public void IsRequestTopic_IsFalseForATopicOutsideTheTable(string topic)
    {
        Assert.DoesNotContain(topic, EnrollRequests.Open.Select(r => r.Topic));
        Assert.False(EnrollTopics.IsRequestTopic(topic));
        Assert.False(EnrollRequests.TryFind(topic, out _));
    }

    [Fact]
    public void NamesDevice_ForRequestsThatMayCarryADeviceId()
    {
        Assert.True(EnrollRequests.Register.NamesDevice);
        Assert.True(EnrollRequests.TokensRefresh.NamesDevice);
        Assert.False(EnrollRequests.ProvisioningInit.NamesDevice);
        Assert.False(EnrollRequests.ProvisioningComplete.NamesDevice);
    }

    [Fact]
    public void Identifiers_AreReadFromTheRequest_AndADesiredDeviceIdIsNotTheSendersDeviceId()
    {
        Assert.Equal(
            new RequestIdentifiers("dev_1", "c1", "r1"),
            EnrollRequests.Register.Identifiers(new RegistrationRequest { DeviceId = "dev_1", ClientId = "c1", RequestId = "r1" }));
        Assert.Equal(
            new RequestIdentifiers("dev_2", "c2", null),
            EnrollRequests.TokensRefresh.Identifiers(new TokenRefreshRequest { DeviceId = "dev_2", ClientId = "c2" }));
        Assert.Equal(
            new RequestIdentifiers(null, "c3", "r3"),
            EnrollRequests.ProvisioningInit.Identifiers(new ProvisioningInitRequest { DesiredDeviceId = "wanted", ClientId = "c3", RequestId = "r3" }));
        Assert.Equal(
            new RequestIdentifiers(null, "c4", "r4"),
            EnrollRequests.ProvisioningComplete.Identifiers(new ProvisioningCompleteRequest { OperationId = "op_1", ClientId = "c4", RequestId = "r4" }));
    }
}
