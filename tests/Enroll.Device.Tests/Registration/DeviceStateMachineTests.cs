using Enroll.Device.Registration;

namespace Enroll.Device.Tests.Registration;

public sealed class DeviceStateMachineTests
{
    [Theory]
    [InlineData(DeviceState.Stopped, DeviceState.Connecting)]
    [InlineData(DeviceState.Stopped, DeviceState.Registered)]
    [InlineData(DeviceState.Connecting, DeviceState.Registering)]
    [InlineData(DeviceState.Registering, DeviceState.WaitingToRetry)]
    [InlineData(DeviceState.WaitingToRetry, DeviceState.Registering)]
    [InlineData(DeviceState.Registering, DeviceState.Pending)]
    [InlineData(DeviceState.Pending, DeviceState.Registering)]
    [InlineData(DeviceState.Registering, DeviceState.Registered)]
    [InlineData(DeviceState.Registered, DeviceState.Registering)]
    [InlineData(DeviceState.Registering, DeviceState.Failed)]
    [InlineData(DeviceState.Failed, DeviceState.Connecting)]
    [InlineData(DeviceState.Pending, DeviceState.Stopped)]
    public void AllowedTransitions_AreAccepted(DeviceState from, DeviceState to) =>
        Assert.True(DeviceStateMachine.CanTransition(from, to));

    [Theory]
    [InlineData(DeviceState.Stopped, DeviceState.Pending)]
    [InlineData(DeviceState.Stopped, DeviceState.WaitingToRetry)]
    [InlineData(DeviceState.Connecting, DeviceState.Registered)]
    [InlineData(DeviceState.Unprovisioned, DeviceState.Registered)]
    [InlineData(DeviceState.Failed, DeviceState.Pending)]
    [InlineData(DeviceState.WaitingToRetry, DeviceState.Registered)]
    public void ImpossibleTransitions_AreRefused(DeviceState from, DeviceState to)
    {
        Assert.False(DeviceStateMachine.CanTransition(from, to));
        var machine = new DeviceStateMachine("c");
        foreach (var step in PathTo(from))
        {
            machine.TransitionTo(step);
        }

        Assert.Throws<InvalidOperationException>(() => machine.TransitionTo(to));
    }

    [Fact]
    public void EveryChange_IsAnnouncedWithBothStatuses()
    {
        var machine = new DeviceStateMachine("c");
        var seen = new List<(DeviceState From, DeviceState To)>();
        machine.Changed += (_, e) => seen.Add((e.Previous.State, e.Current.State));

        machine.TransitionTo(DeviceState.Connecting);
        machine.TransitionTo(DeviceState.Registering, s => s with { Attempt = 1 });
        machine.TransitionTo(DeviceState.Registered, s => s with { DeviceId = "d" });

        Assert.Equal([(DeviceState.Stopped, DeviceState.Connecting), (DeviceState.Connecting, DeviceState.Registering), (DeviceState.Registering, DeviceState.Registered)], seen);
        Assert.Equal("d", machine.Current.DeviceId);
    }

    private static DeviceState[] PathTo(DeviceState state) => state switch
    {
        DeviceState.Stopped => [],
        DeviceState.Connecting => [DeviceState.Connecting],
        DeviceState.Unprovisioned => [DeviceState.Unprovisioned],
        DeviceState.Failed => [DeviceState.Failed],
        DeviceState.WaitingToRetry => [DeviceState.Connecting, DeviceState.WaitingToRetry],
        _ => throw new ArgumentOutOfRangeException(nameof(state)),
    };
}
