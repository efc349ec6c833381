namespace Enroll.Server.Registry;

/// <summary>Recent refusals (rate-limited sources, refused tokens) and devices' status reports, for the fleet overview (issue 15).</summary>
internal interface IRefusalStore;
