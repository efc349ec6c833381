using Enroll.Cli;

return await EnrollCli.Build().Parse(args).InvokeAsync();
